-- cancel: a Queued or Scheduled job becomes Canceled and never runs; an InProgress one
-- becomes Canceled at once, its claim dropped (a late complete, fail or renew finds it
-- lost) and its id published on the cancel channel, for the process running it; a
-- terminal one is left unchanged (so two cancels, from anywhere, end in one Canceled job).
--
-- ARGV[1]  job id
--
-- Returns: {status before, the job's hash as {field, value, ...}}, or false when there is
-- no such job.

even_when_full()
local id = ARGV[1]
local key = job_key(id)
local status = cancel(key, id, now_ms(), clock_ms())
flush_pending()
if not status then
  return false
end
return {status, redis.call('HGETALL', key)}
