-- complete_many: claimed jobs succeeded; each becomes Completed with its result. One call
-- settles every completion a worker process made in the same event-loop turn.
--
-- KEYS[1]  the active ZSET           KEYS[2]  the job key prefix ("{p}:job:")
-- KEYS[3]  the expiring LIST (see retain in _lib.lua)
-- ARGV[1]  retention of terminal jobs (ms)
-- ARGV[2]  the done channel
-- ARGV[3], ARGV[4], ARGV[5], ARGV[6], ...  4-tuples of job id, claim token, result JSON,
--          and what is kept of the captured request ('' for nothing): a Completed job never
--          runs again, so only its owner stays
--
-- Returns: per tuple, in order, the completion time (ms), or -1 when that claim is lost
-- (that job is left unchanged).

even_when_full()
local clock = clock_ms()
local now = now_ms()
local stamp = ms(now)
local retention = tonumber(ARGV[1])
local replies = {}
for i = 3, #ARGV, 4 do
  local id = ARGV[i]
  local key = KEYS[2] .. id
  if owns(key, ARGV[i + 1]) then
    -- The terminal transition of _lib's settle(), with the result folded into its writes.
    redis.call('HSET', key, 'status', 'Completed', 'result', ARGV[i + 2],
      'completed_at', stamp, 'last_updated_at', stamp)
    redis.call('HDEL', key, 'token', 'run_at', 'error')
    if ARGV[i + 3] == '' then
      redis.call('HDEL', key, 'request')
    else
      redis.call('HSET', key, 'request', ARGV[i + 3])
    end
    redis.call('ZREM', KEYS[1], id)
    retain(key, id, clock, retention, KEYS[3])
    announce(key, id, ARGV[2])
    replies[#replies + 1] = now
  else
    replies[#replies + 1] = -1
  end
end
return replies
