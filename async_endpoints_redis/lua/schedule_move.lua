-- schedule_move: move a cron schedule's due time without firing a cycle (the scheduler
-- re-arms a schedule that a backward step of the wall clock left waiting for a time far
-- ahead); a compare-and-set on the due time, like schedule_fire.
--
-- ARGV[1]  the schedule id
-- ARGV[2]  the due time (ms) the caller read
-- ARGV[3]  the new due time (ms)
--
-- Returns: 1 when moved; 0 when the due time had changed (fired, moved or redefined
-- meanwhile) or the schedule is gone.

-- The schedules' keys (see async_endpoints_redis/_schedules.py): CRON is the ZSET of ids by
-- due time, CRON .. ':' .. id the HASH of one schedule.
local CRON = P .. 'cron'

local key = CRON .. ':' .. ARGV[1]
if redis.call('HGET', key, 'next_run_at') ~= ARGV[2] then
  return 0
end
redis.call('HSET', key, 'next_run_at', ARGV[3])
redis.call('ZADD', CRON, ARGV[3], ARGV[1])
return 1
