-- requeue: a Failed or Canceled job becomes Queued at the tail of its queue, with
-- retry_count 0, its error kept, completed_at cleared, out of the retention and the
-- terminal indexes; any other job is left unchanged.
--
-- ARGV[1]  job id
-- ARGV[2]  a random nonce of this call: {p}:steered:<nonce> keeps, for a minute, the
--          status the job had when this call requeued it, so that the call resent after
--          its reply was lost answers that again and requeues nothing more (the job may
--          have run and failed again meanwhile: a second requeue would run it twice)
--
-- Returns: {status before, the job's hash as {field, value, ...}}, or false when there is
-- no such job.

local id = ARGV[1]
local key = job_key(id)
local clock = clock_ms()
local memo = steered_memo(ARGV[2])
local again = steered_answer(memo, key)
if again ~= nil then
  return again
end
local status = requeue(key, id, now_ms())
flush_pending()
if not status then
  return false
end
if status == 'Failed' or status == 'Canceled' then
  wake()
  if memo then
    redis.call('SET', memo, status, 'PX', 60000)
  end
end
return {status, redis.call('HGETALL', key)}
