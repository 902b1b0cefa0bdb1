-- batch_cancel: one step of cancelling a batch. The first step (ARGV[2] '') of a Running
-- batch marks it Canceled (finished_at now) and stores its continuations Canceled; then
-- each step cancels up to ARGV[4] of its jobs, from ARGV[3] on in its job list, as
-- cancel.lua does (a running one is announced on the cancel channel); while steps remain,
-- the batch's field 'walk' says where the next starts, so that a cancel_batch cut short
-- between its steps and called again goes on from there. Of a batch that is not Running
-- (and not in such a walk) only the continuations not yet run are cancelled (one step):
-- Queued or Scheduled and never started (one running, or waiting for a retry, goes on).
--
-- ARGV[1]  batch id    ARGV[2]  '' (first step), or 'jobs' as the first step answered
-- ARGV[3]  where in the job list this step starts    ARGV[4]  the most jobs per step
--
-- Returns: {where the next step starts (-1: done), the mode for it, the batch's hash as
-- {field, value, ...}}, or false when there is no such batch.

even_when_full()
local batch_id, mode = ARGV[1], ARGV[2]
local bkey = batch_key(batch_id)
local status = redis.call('HGET', bkey, 'status')
if not status then
  return false
end
local clock = clock_ms()
local now = now_ms()
local ids = {}
if mode == '' then
  if status == 'Running' then
    mode = 'jobs'
    redis.call('HSET', bkey, 'status', 'Canceled', 'finished_at', ms(now))
    BATCH.continue(bkey, batch_id, now, clock, true)
  elseif status == 'Canceled' and redis.call('HEXISTS', bkey, 'walk') == 1 then
    mode = 'jobs'
    ARGV[3] = redis.call('HGET', bkey, 'walk')
  else
    mode = 'conts'
    for id in string.gmatch(redis.call('HGET', bkey, 'conts') or '', '%S+') do
      local was = redis.call('HMGET', job_key(id), 'status', 'started_at')
      if (was[1] == 'Queued' or was[1] == 'Scheduled') and not was[2] then
        ids[#ids + 1] = id
      end
    end
  end
end
local start, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local next_start = -1
if mode == 'jobs' then
  ids = redis.call('LRANGE', bkey .. ':jobs', start, start + limit - 1)
  if #ids == limit then
    next_start = start + limit
    redis.call('HSET', bkey, 'walk', next_start)
  else
    redis.call('HDEL', bkey, 'walk')
  end
end
READY_NOTED = {}  -- their ids leave their queues' LISTs in one pass per queue
for _, id in ipairs(ids) do
  cancel(job_key(id), id, now, clock)
end
ready_remove_noted()
flush_pending()
return {next_start, mode, redis.call('HGETALL', bkey)}
