-- complete: the claimed job succeeded; it becomes Completed with its result.
--
-- KEYS[1]  the job hash              KEYS[2]  the active ZSET
-- ARGV[1]  job id                    ARGV[2]  claim token
-- ARGV[3]  result JSON               ARGV[4]  retention of terminal jobs (ms)
-- ARGV[5]  the done channel
--
-- Returns: the job's hash as {field, value, ...}, or false when the claim is lost
-- (nothing changed).

if not owns(KEYS[1], ARGV[2]) then
  return false
end
redis.call('HSET', KEYS[1], 'result', ARGV[3])
redis.call('HDEL', KEYS[1], 'error')
settle(KEYS[1], ARGV[1], 'Completed', now_ms(), KEYS[2], tonumber(ARGV[4]), ARGV[5])
return redis.call('HGETALL', KEYS[1])
