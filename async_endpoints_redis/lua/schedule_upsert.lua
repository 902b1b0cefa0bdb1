-- schedule_upsert: create or replace one cron schedule (see _schedules.py for the layout).
--
-- ARGV[1]  the schedule id
-- ARGV[2]  its cron expression
-- ARGV[3]  its time zone
-- ARGV[4]  its next due time (ms, wall clock), as the engine computed it
-- ARGV[5], ARGV[6], ...  the other fields, as field, value pairs: name and unique ('1' or
--          '0') always; body, queue, tenant and last_job_id when set
--
-- An existing schedule with the same expression and time zone keeps its due time (every
-- process redeclares its schedules at start: none may skip or repeat a cycle); an existing
-- one keeps its last_job_id whatever changes (a unique schedule still waits for that job),
-- and fired_at, the due time of the last cycle fired. A new timing whose due time is not
-- after that cycle (computed from a clock read before the cycle fired) is refused, so no
-- cycle is fired twice: the caller computes the due time after fired_at and calls again.
--
-- Returns: the schedule's hash as JSON text ({field, value, ...}); or {'fired', fired_at}
-- when refused (nothing written).

-- The schedules' keys (see async_endpoints_redis/_schedules.py): CRON is the ZSET of ids by
-- due time, CRON .. ':' .. id the HASH of one schedule.
local CRON = P .. 'cron'

local id = ARGV[1]
local key = CRON .. ':' .. id
local cron, zone, due = ARGV[2], ARGV[3], ARGV[4]
local before = redis.call('HMGET', key, 'cron', 'timezone', 'next_run_at', 'last_job_id',
  'fired_at')
local same = before[1] and before[1] == cron and before[2] == zone and before[3]
if not same and before[5] and tonumber(due) <= tonumber(before[5]) then
  return {'fired', before[5]}
end
redis.call('DEL', key)
local fields = {'id', id, 'cron', cron, 'timezone', zone, 'next_run_at', due}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
if same then
  fields[8] = before[3]
end
redis.call('HSET', key, unpack(fields))
if before[4] then
  redis.call('HSET', key, 'last_job_id', before[4])
end
if before[5] then
  redis.call('HSET', key, 'fired_at', before[5])
end
redis.call('ZADD', CRON, fields[8], id)
return cjson.encode(redis.call('HGETALL', key))
