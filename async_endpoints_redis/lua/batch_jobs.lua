-- batch_jobs: one page of a batch's jobs (its continuations once stored), in the order
-- they were stored, from its job list (_batch.lua); jobs no longer kept are skipped.
--
-- ARGV[1]  batch id    ARGV[2]  where in the job list the page starts
-- ARGV[3]  the most jobs on the page    ARGV[4]  the most entries looked at
-- ARGV[5]  status ('' for any)    ARGV[6]  queue ('' for any)    ARGV[7]  tenant ('')
--
-- Returns: {jobs as job_text values, where the next page starts (-1: this is the last)}.

local members = batch_key(ARGV[1]) .. ':jobs'
local start, limit, budget = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local status, queue, tenant = ARGV[5], ARGV[6], ARGV[7]
local ids = redis.call('LRANGE', members, start, start + budget - 1)
local jobs = {}
local looked = 0
for _, id in ipairs(ids) do
  if #jobs >= limit then
    break
  end
  looked = looked + 1
  local key = job_key(id)
  local f = redis.pcall('HMGET', key, 'status', 'queue', 'tenant')
  if type(f) == 'table' and f[1] and (status == '' or f[1] == status)
      and (queue == '' or (f[2] or DEFAULT_QUEUE) == queue)
      and (tenant == '' or f[3] == tenant) then
    jobs[#jobs + 1] = job_text(key, id)
  end
end
local next_start = start + looked
if looked == #ids and #ids < budget then
  next_start = -1
elseif #jobs >= limit and next_start >= redis.call('LLEN', members) then
  next_start = -1
end
return {jobs, next_start}
