-- fail: an attempt of the claimed job failed; retry it (Queued or Scheduled) while
-- retries are left and a delay is given, else it becomes Failed for good.
--
-- KEYS[1]  the job hash              KEYS[2]  the active ZSET
-- KEYS[3]  the ready queue (LIST)    KEYS[4]  the scheduled ZSET
-- KEYS[5]  the expiring LIST
-- ARGV[1]  job id                    ARGV[2]  claim token
-- ARGV[3]  error JSON                ARGV[4]  retry delay (ms), or '' for no retry
-- ARGV[5]  retention of terminal jobs (ms)
-- ARGV[6]  the wake channel          ARGV[7]  the done channel
--
-- Returns: the job's hash as {field, value, ...}, or false when the claim is lost
-- (nothing changed).

even_when_full()
if not owns(KEYS[1], ARGV[2]) then
  return false
end
local clock = clock_ms()
local now = now_ms()
redis.call('HSET', KEYS[1], 'error', ARGV[3])
if ARGV[4] ~= '' and has_retries_left(KEYS[1]) then
  requeue(KEYS[1], ARGV[1], now, clock, tonumber(ARGV[4]), KEYS[3], KEYS[4], KEYS[2])
  redis.call('PUBLISH', ARGV[6], ARGV[1])
else
  local terminal = {active = KEYS[2], retention = tonumber(ARGV[5]), expiring = KEYS[5]}
  settle(KEYS[1], ARGV[1], 'Failed', now, clock, terminal, ARGV[7])
end
return redis.call('HGETALL', KEYS[1])
