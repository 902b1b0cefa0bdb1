-- Helpers shared by every script; _scripts.py prepends this file to each of them.
-- Times are integer milliseconds of the Redis server's clock, stored as decimal text.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n)
  return string.format('%d', n)
end

-- The job's status, or nil when the key is missing or is not a hash (corrupt).
local function status_of(key)
  local status = redis.pcall('HGET', key, 'status')
  if type(status) ~= 'string' then
    return nil
  end
  return status
end

-- True when the claim token matches: the caller still owns the job.
local function owns(key, token)
  return redis.pcall('HGET', key, 'token') == token
end

-- True while retry_count < max_retries.
local function has_retries_left(key)
  local counts = redis.call('HMGET', key, 'retry_count', 'max_retries')
  return (tonumber(counts[1]) or 0) < (tonumber(counts[2]) or 0)
end

-- Counts one more attempt and makes the job waiting again: Queued at the tail of the
-- ready queue when delay <= 0, else Scheduled until now + delay.
local function requeue(key, id, now, delay, queue, scheduled, active)
  redis.call('HINCRBY', key, 'retry_count', 1)
  redis.call('HDEL', key, 'token')
  redis.call('ZREM', active, id)
  if delay <= 0 then
    redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
    redis.call('HDEL', key, 'run_at')
    redis.call('RPUSH', queue, id)
  else
    redis.call('HSET', key, 'status', 'Scheduled', 'run_at', ms(now + delay),
      'last_updated_at', ms(now))
    redis.call('ZADD', scheduled, now + delay, id)
  end
end

-- The terminal transition: sets the status, drops the claim, starts the retention
-- countdown and tells waiters on the done channel.
local function settle(key, id, status, now, active, retention, done_channel)
  redis.call('HSET', key, 'status', status, 'completed_at', ms(now), 'last_updated_at', ms(now))
  redis.call('HDEL', key, 'token', 'run_at')
  redis.call('ZREM', active, id)
  redis.call('PEXPIRE', key, retention)
  redis.call('PUBLISH', done_channel, id)
end

-- Script body follows.
