-- enqueue_many: store new jobs as Queued at the tail of the ready queue, and wake workers.
-- One call carries every submission a process made in the same event-loop turn.
--
-- KEYS[1]  the ready queue (LIST)    KEYS[2]  the scheduled ZSET
-- KEYS[3]  the job key prefix ("{p}:job:")
-- ARGV[1]  the wake channel
-- ARGV[2], ARGV[3], ...  5-tuples of job id, job name, max_retries, request JSON (or ''
--          for an empty request), and the most waiting jobs allowed (-1: no limit)
--
-- Returns: per job, in order, its created-at time (ms); -1 when the id exists (that job
--          is left unchanged); -2 when its limit of waiting (Queued or Scheduled) jobs is
--          reached (nothing stored for it).

local now = now_ms()
local stamp = ms(now)
local waiting = nil
local added = false
local replies = {}
for i = 2, #ARGV, 5 do
  local key = KEYS[3] .. ARGV[i]
  local limit = tonumber(ARGV[i + 4])
  if limit >= 0 and waiting == nil then
    waiting = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  end
  if redis.call('EXISTS', key) == 1 then
    replies[#replies + 1] = -1
  elseif limit >= 0 and waiting >= limit then
    replies[#replies + 1] = -2
  else
    -- Left out while they hold their defaults, to keep the hash small: retry_count (0),
    -- last_updated_at (created_at) and request (empty).
    redis.call('HSET', key, 'name', ARGV[i + 1], 'status', 'Queued',
      'max_retries', ARGV[i + 2], 'created_at', stamp)
    if ARGV[i + 3] ~= '' then
      redis.call('HSET', key, 'request', ARGV[i + 3])
    end
    redis.call('RPUSH', KEYS[1], ARGV[i])
    if waiting ~= nil then
      waiting = waiting + 1
    end
    added = true
    replies[#replies + 1] = now
  end
end
if added then
  redis.call('PUBLISH', ARGV[1], '')
end
return replies
