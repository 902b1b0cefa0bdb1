-- schedule_due: the cron schedules whose due time has come by the Redis server's wall
-- clock, soonest first: O(log n + limit) whatever the number of schedules.
--
-- ARGV[1]  the most schedules to return
--
-- Returns: per due schedule, its hash as JSON text ({field, value, ...}).

-- The schedules' keys (see async_endpoints_redis/_schedules.py): CRON is the ZSET of ids by
-- due time, CRON .. ':' .. id the HASH of one schedule.
local CRON = P .. 'cron'

local limit = tonumber(ARGV[1])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', CRON, '-inf', now_ms(), 'LIMIT', 0, limit)) do
  local fields = redis.call('HGETALL', CRON .. ':' .. id)
  if #fields > 0 then
    out[#out + 1] = cjson.encode(fields)
  end
end
return out
