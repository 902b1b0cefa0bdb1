-- claim: make due Scheduled jobs Queued, then claim up to a limit of Queued jobs, oldest
-- first, each with its own token and lease.
--
-- KEYS[1]  the ready queue (LIST)    KEYS[2]  the scheduled ZSET
-- KEYS[3]  the active ZSET           KEYS[4]  the job key prefix ("{p}:job:")
-- ARGV[1]  how many jobs to claim    ARGV[2]  lease (ms)
-- ARGV[3]  a random token base; claim n gets the token "<base>.<n>"
-- ARGV[4]  the most due Scheduled jobs moved per call
-- ARGV[5]  the most ids popped per call (bounds the work spent skipping bad ids)
--
-- Returns: an array of {id, {field, value, ...}} for the claimed jobs (their whole hash).
-- Ids whose hash is missing, not a hash, not Queued or lacking numeric counters are
-- dropped from the queue and never stall it.
-- (retry_count may be absent: it is 0 until the first retry.)

local now = now_ms()

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  local key = KEYS[4] .. id
  if status_of(key) == 'Scheduled' then
    -- Only the status: the promotion happens lazily here, so it is no update of its own.
    redis.call('HSET', key, 'status', 'Queued')
    redis.call('RPUSH', KEYS[1], id)
  end
end

local function claimable(key)
  if status_of(key) ~= 'Queued' then
    return false
  end
  local fields = redis.call('HMGET', key, 'name', 'retry_count', 'max_retries', 'created_at')
  return fields[1] and tonumber(fields[2] or '0') and tonumber(fields[3]) and tonumber(fields[4])
end

local limit = tonumber(ARGV[1])
local deadline = now + tonumber(ARGV[2])
local claimed = {}
for n = 1, tonumber(ARGV[5]) do
  if #claimed >= limit then
    break
  end
  local id = redis.call('LPOP', KEYS[1])
  if not id then
    break
  end
  local key = KEYS[4] .. id
  if claimable(key) then
    redis.call('HSET', key, 'status', 'InProgress', 'token', ARGV[3] .. '.' .. n,
      'last_updated_at', ms(now))
    redis.call('HSETNX', key, 'started_at', ms(now))
    redis.call('HDEL', key, 'run_at')
    redis.call('ZADD', KEYS[3], deadline, id)
    claimed[#claimed + 1] = {id, redis.call('HGETALL', key)}
  end
end
return claimed
