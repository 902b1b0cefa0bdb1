-- requeue: a Failed or Canceled job becomes Queued at the tail of its queue, with
-- retry_count 0, its error kept, completed_at cleared, out of the retention and the
-- terminal indexes; any other job is left unchanged.
--
-- ARGV[1]  job id
--
-- Returns: {status before, the job's hash as {field, value, ...}}, or false when there is
-- no such job.

local id = ARGV[1]
local key = job_key(id)
local clock = clock_ms()
local status = requeue(key, id, now_ms())
flush_pending()
if not status then
  return false
end
if status == 'Failed' or status == 'Canceled' then
  wake()
end
return {status, redis.call('HGETALL', key)}
