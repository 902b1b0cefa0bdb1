-- cancel: a Queued or Scheduled job becomes Canceled and never runs; an InProgress one
-- becomes Canceled at once, its claim dropped (a late complete, fail or renew finds it
-- lost) and its id published on the cancel channel, for the process running it; a
-- terminal one is left unchanged (so two cancels, from anywhere, end in one Canceled job).
--
-- ARGV[1]  job id
-- ARGV[2]  a random nonce of this call: {p}:steered:<nonce> keeps, for a minute, the
--          status the job had when this call cancelled it, so that the call resent after
--          its reply was lost (redis-py sends it once more) answers that status again
--          (the caller cancelled it) rather than "Canceled already"
--
-- Returns: {status before, the job's hash as {field, value, ...}}, or false when there is
-- no such job.

even_when_full()
local id = ARGV[1]
local key = job_key(id)
local memo = steered_memo(ARGV[2])
local again = steered_answer(memo, key)
if again ~= nil then
  return again
end
local status = cancel(key, id, now_ms(), clock_ms())
flush_pending()
if not status then
  return false
end
if memo and (status == 'Queued' or status == 'Scheduled' or status == 'InProgress') then
  redis.call('SET', memo, status, 'PX', 60000)
end
return {status, redis.call('HGETALL', key)}
