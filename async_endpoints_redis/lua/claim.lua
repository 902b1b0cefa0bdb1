-- claim: make due Scheduled jobs Queued (each in its own queue), then claim up to a limit
-- of Queued jobs from the given queues in strict priority order (oldest first within a
-- queue, or the queue's tenants taking turns; paused queues skipped), each with its own
-- token and lease. Only the first job of a partition key's lane is ever in the ready
-- order, so nothing claimed is put back.
--
-- ARGV[1]  how many jobs to claim    ARGV[2]  lease (ms)
-- ARGV[3]  a random token base; claim n gets the token "<base>.<n>"
-- ARGV[4]  the most due Scheduled jobs moved per call
-- ARGV[5]  the most ids popped per call (bounds the work spent skipping bad ids)
-- ARGV[6]  "<the claimer's inbox> <n>": its offer, if any and numbered n or lower, ends
--          first (see end_offer in _offers.lua), so the jobs handed to it but not started
--          are claimed again from the head of the queue
-- ARGV[7]  the queues, highest priority first, as a JSON array
-- ARGV[8]  '1' when the token base is that of a call that went unanswered (a resend)
-- ARGV[9], ...  tokens of the offer's jobs the claimer started
--
-- {p}:claim:<base> (the memo, a LIST of the ids this call claimed) makes a call safe to
-- resend: when its reply was lost (redis-py resends once, and the store reuses the token
-- base of a call that went unanswered), the memo holds what the first send claimed, and
-- those claims are returned again instead of claiming more jobs and stranding the first
-- ones until their lease runs out. A resend that finds no memo and claims nothing leaves
-- one all the same (an empty id): its first send may still be carried out (a frozen
-- server runs its backlog when it resumes, in any order across connections), and must
-- then claim nothing, since nobody will send that base again.
--
-- Returns: {the claimed jobs, each as its id followed by its hash as a JSON array (see
-- job_text in _lib.lua); when the given queues ran dry, the ms until the earliest
-- Scheduled job is due (0: due now) or -1 when none is, else -2}: a claimer that waits
-- for work next need not ask for that due time again (the wake channel tells it of
-- anything claimable or due sooner that comes after this call).
-- Ids whose hash is missing, not a hash, not Queued or lacking numeric counters are
-- dropped from the queue and never stall it.
-- (retry_count may be absent: it is 0 until the first retry.)

local clock = clock_ms()
local now = now_ms()
local back = end_offer(ARGV[6], tail(ARGV, 9), now)
flush_pending()
local memo = K.claims .. ARGV[3]

local remembered = redis.call('LRANGE', memo, 0, -1)
if #remembered > 0 then
  -- Their leases are renewed from now: the first send may have been carried out long ago
  -- (its reply lost to the caller's deadline in a stall), and the caller counts the lease
  -- from this send.
  local again = {}
  local prefix = ARGV[3] .. '.'
  local renewed = LEASE_FROM + tonumber(ARGV[2])
  for _, id in ipairs(remembered) do
    local key = job_key(id)
    local token = redis.pcall('HGET', key, 'token')
    if type(token) == 'string' and string.sub(token, 1, #prefix) == prefix then
      if status_of(key) == 'InProgress' then
        redis.call('ZADD', K.active, renewed, id)
      end
      again[#again + 1] = job_text(key, id)
    elseif type(token) ~= 'string' then
      -- Cancelled meanwhile: the partition key its claim holds goes to the key's next
      -- job now (nobody will run it to let go), as an offer's end does.
      local held = redis.call('HGET', K.held_by, id)
      if held and string.sub(held, 1, #prefix) == prefix then
        let_go(id, string.match(held, '^(%S+) '))
      end
    end
  end
  flush_pending()
  redis.call('PEXPIRE', memo, tonumber(ARGV[2]))  -- for a further resend, as long again
  return {again, -2}
end

local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', clock, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(due) do
  local key = job_key(id)
  if status_of(key) == 'Scheduled' then
    promote(key, id)
  else
    redis.call('ZREM', K.scheduled, id)
  end
end

-- The job's fields a claim needs when it is claimable (Queued, with its name and numeric
-- counters and time), else nil. A Queued job too corrupt to claim leaves the Queued count
-- and index as it is dropped.
local function claimable(key, id, queue)
  local fields = redis.pcall('HMGET', key, 'status', 'name', 'retry_count', 'max_retries',
    'created_at', 'started_at', 'run_at', 'follow', 'for', 'queued_at', 'q')
  if type(fields) ~= 'table' or fields[1] ~= 'Queued' then
    return nil
  end
  hook_fields[key] = {fields[8] or false, fields[9] or false}
  if fields[2] and tonumber(fields[3] or '0') and tonumber(fields[4]) and tonumber(fields[5]) then
    return fields
  end
  leave_queued(id, queue, fields[10] or fields[5], fields[11])
  return nil
end

local limit = tonumber(ARGV[1])
local deadline = LEASE_FROM + tonumber(ARGV[2])  -- see _lib.lua: late in a stall too
local queues = open_queues(queue_list(ARGV[7]))
local claimed = {}
local ids = {}
local dry = false
for n = 1, tonumber(ARGV[5]) do
  if #claimed >= limit then
    break
  end
  local id, queue = ready_pop(queues)
  if not id then
    dry = true
    break
  end
  local key = job_key(id)
  local fields = claimable(key, id, queue)
  if fields then
    claim(key, id, queue, ARGV[3] .. '.' .. n, deadline, now, fields[6], fields[7], fields[5],
      fields[10] or fields[5], fields[11])
    claimed[#claimed + 1] = job_text(key, id)
    ids[#ids + 1] = id
  end
end
if #ids > 0 then
  write_all('RPUSH', memo, ids)
  redis.call('PEXPIRE', memo, tonumber(ARGV[2]))
elseif ARGV[8] == '1' then
  redis.call('RPUSH', memo, '')  -- the base is spent (see the memo above)
  redis.call('PEXPIRE', memo, tonumber(ARGV[2]))
end
flush_pending()
if back > 0 then
  wake()
end
local due = -2
if dry then
  due = -1
  local first = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  if #first > 0 then
    due = math.max(0, tonumber(first[2]) - clock)
  end
end
return {claimed, due}
