-- schedule_list: every cron schedule.
--
-- Returns: per schedule, its hash as JSON text ({field, value, ...}), in id order.

-- The schedules' keys (see async_endpoints_redis/_schedules.py): CRON is the ZSET of ids by
-- due time, CRON .. ':' .. id the HASH of one schedule.
local CRON = P .. 'cron'

local out = {}
for _, id in ipairs(redis.call('ZRANGE', CRON, 0, -1)) do
  local fields = redis.call('HGETALL', CRON .. ':' .. id)
  if #fields > 0 then
    out[#out + 1] = cjson.encode(fields)
  end
end
return out
