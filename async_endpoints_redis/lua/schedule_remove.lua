-- schedule_remove: delete one cron schedule; its jobs are left alone.
--
-- ARGV[1]  the schedule id
--
-- Returns: 1 when it existed, else 0.

-- The schedules' keys (see async_endpoints_redis/_schedules.py): CRON is the ZSET of ids by
-- due time, CRON .. ':' .. id the HASH of one schedule.
local CRON = P .. 'cron'

local id = ARGV[1]
redis.call('ZREM', CRON, id)
return redis.call('DEL', CRON .. ':' .. id)
