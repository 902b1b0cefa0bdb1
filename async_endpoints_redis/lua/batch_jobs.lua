-- batch_jobs: one page of a batch's jobs (its continuations once stored), newest stored
-- first, from its job list (_batch.lua); jobs no longer kept are skipped. The listing of a
-- batch without a status (with a status, list_jobs.lua reads that status's index).
--
-- ARGV[1]  batch id    ARGV[2]  the index in the job list the page starts at, walking
--          towards the first stored ('' for the newest)
-- ARGV[3]  the most jobs on the page    ARGV[4]  the most entries looked at
-- ARGV[5]  status ('' for any)    ARGV[6]  queue ('' for any)    ARGV[7]  tenant ('')
--
-- Returns: {jobs as job_text values, where the next page starts (-1: this is the last)}.
-- An index counts from the first stored, so jobs appended while a client pages (the
-- continuations) never shift the pages it has yet to read.

local members = batch_key(ARGV[1]) .. ':jobs'
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
-- A start past the end (the list shortened, or gone with its batch) starts at the end.
local last = redis.call('LLEN', members) - 1
local start = ARGV[2] == '' and last or math.min(tonumber(ARGV[2]), last)
local status, queue, tenant = ARGV[5], ARGV[6], ARGV[7]
if start < 0 then
  return {{}, -1}
end
local ids = redis.call('LRANGE', members, math.max(0, start - budget + 1), start)
local jobs = {}
local looked = 0
for i = #ids, 1, -1 do
  if #jobs >= limit then
    break
  end
  looked = looked + 1
  local id = ids[i]
  local key = job_key(id)
  local f = redis.pcall('HMGET', key, 'status', 'queue', 'tenant')
  if type(f) == 'table' and f[1] and (status == '' or f[1] == status)
      and (queue == '' or (f[2] or DEFAULT_QUEUE) == queue)
      and (tenant == '' or f[3] == tenant) then
    jobs[#jobs + 1] = job_text(key, id)
  end
end
local next_start = start - looked
if next_start < 0 then
  next_start = -1
end
return {jobs, next_start}
