-- enqueue: store a new job as Queued at the tail of the ready queue, and wake workers.
--
-- KEYS[1]  the job hash           KEYS[2]  the ready queue (LIST)
-- KEYS[3]  the scheduled ZSET
-- ARGV[1]  job id                 ARGV[2]  job name
-- ARGV[3]  max_retries            ARGV[4]  request JSON, or '' for an empty request
-- ARGV[5]  max waiting jobs, or -1 for no limit
-- ARGV[6]  the wake channel
--
-- Returns: the created-at time (ms) on success; -1 when the id exists (nothing changed);
--          -2 when max waiting jobs are Queued or Scheduled already (nothing changed).

if redis.call('EXISTS', KEYS[1]) == 1 then
  return -1
end
local max_waiting = tonumber(ARGV[5])
if max_waiting >= 0 and redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) >= max_waiting then
  return -2
end
-- Left out while they hold their defaults, to keep the hash small: retry_count (0),
-- last_updated_at (created_at) and request (empty).
local now = ms(now_ms())
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'status', 'Queued', 'max_retries', ARGV[3],
  'created_at', now)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'request', ARGV[4])
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[6], ARGV[1])
return tonumber(now)
