-- schedule_fire: fire the cycle of one cron schedule: a compare-and-set on its due time,
-- so that a cycle enqueues one job however many processes saw it due.
--
-- ARGV[1]  the schedule id
-- ARGV[2]  the due time (ms) the caller read: the cycle it fires
-- ARGV[3]  the next due time (ms) the caller computed
-- ARGV[4..10]  the cycle's job: id, name, max_retries, request JSON ('' for an empty
--          request), queue, partition key and tenant ('' for none)
--
-- When the schedule still has that due time, it moves to the next one (and fired_at to
-- that due time: the cycle is spent, whether a job is stored or skipped); then, unless the
-- schedule is unique and its last job exists and is not terminal, the job is Queued by the
-- enqueue transition of _lifecycle.lua (as enqueue_many stores it, with no waiting limit
-- and never handed over) and becomes the last job.
--
-- Returns: the job's created-at time (ms); false when the cycle was fired already (or the
-- schedule is gone or was redefined), or skipped.

-- The schedules' keys (see async_endpoints_redis/_schedules.py): CRON is the ZSET of ids by
-- due time, CRON .. ':' .. id the HASH of one schedule.
local CRON = P .. 'cron'

local key = CRON .. ':' .. ARGV[1]
local stored = redis.call('HMGET', key, 'next_run_at', 'unique', 'last_job_id')
if stored[1] ~= ARGV[2] then
  return false
end
redis.call('HSET', key, 'next_run_at', ARGV[3], 'fired_at', ARGV[2])  -- see schedule_upsert
redis.call('ZADD', CRON, ARGV[3], ARGV[1])
if stored[2] == '1' and stored[3] then
  local status = status_of(job_key(stored[3]))
  if status and not TERMINAL[status] then
    return false
  end
end
local id, queue = ARGV[4], ARGV[8]
local job = job_key(id)
if redis.call('EXISTS', job) == 1 then
  return false
end
local partition_key = ARGV[9] ~= '' and ARGV[9] or nil
local tenant = ARGV[10] ~= '' and ARGV[10] or nil
local now = now_ms()
local fields = new_job_fields(ARGV[5], ARGV[6], ARGV[7], queue, partition_key, tenant, ms(now))
local first = lane_join_new(fields, partition_key, id)
enqueue(job, id, fields, queue, now, tenant, first)
flush_pending()
if first then
  wake()
end
redis.call('HSET', key, 'last_job_id', id)
return now
