-- Watches jobs for this process's event streams: each id's watch lapses ttl ms from now
-- (server clock) unless renewed, never sooner than another process asked; lapsed watches
-- of every process are dropped first.
-- ARGV: ttl (ms), ids...
-- Returns: the ids of those whose job is not stored (unknown, or its data lost)
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', WATCHED, '-inf', now)
local lapses = now + tonumber(ARGV[1])
local missing = {}
for i = 2, #ARGV do
  local old = redis.call('ZSCORE', WATCHED, ARGV[i])
  if not old or tonumber(old) < lapses then
    redis.call('ZADD', WATCHED, lapses, ARGV[i])
  end
  if redis.call('EXISTS', job_key(ARGV[i])) == 0 then
    missing[#missing + 1] = ARGV[i]
  end
end
return missing
