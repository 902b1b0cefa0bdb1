-- migrate: bring a store written by an older version to this layout; every process runs
-- it at start (and recover.lua moves stray legacy queue entries on each pass).
--
-- - The ready queue of the one-queue layout ({p}:queue) moves into the default queue
--   ({p}:queue:default), ahead of its jobs, in order (up to ARGV[1] ids per call).
-- - A store without the layout marker ({p}:layout) that holds Scheduled or InProgress
--   jobs (all of the default queue then) gets their counts and index entries; terminal
--   jobs kept from before are neither counted nor indexed, and jobs of that layout are
--   missing from the listing of all jobs (both leave with the retention once finished).
-- - A store of layout 2 (or older), where a queue's Queued jobs were the length of its
--   LIST, gets "<queue>:Queued" counters from those lengths, once, and its Queued jobs
--   are put in their queue's listing index (up to ARGV[1] ids per call, from
--   {p}:migrating). Layout 3 adds partition keys and tenants, which older jobs lack.
--
-- - Batches stored by a version that did not reserve continuation ids ({p}:reserved,
--   _batch.lua): each Running batch's continuations not stored yet are reserved, once per
--   store, up to ARGV[1] batches per call ({p}:reserving: the last index entry looked
--   at, then 'done').
--
-- ARGV[1]  the most ids moved or indexed per call
--
-- Returns: how many ids and queues are left to move or index (call again while above 0).

clock_ms()
local limit = tonumber(ARGV[1])
local layout = redis.call('GET', K.layout)
if not layout then
  if redis.call('EXISTS', K.counts) == 0 then
    -- Delayed and running jobs are few (bounded by retries in flight and by the workers'
    -- slots): each is counted and indexed as its transition would have done.
    for _, id in ipairs(redis.call('ZRANGE', K.scheduled, 0, -1)) do
      local fields = redis.pcall('HMGET', job_key(id), 'status', 'run_at', 'created_at')
      if type(fields) == 'table' and fields[1] == 'Scheduled' then
        count(DEFAULT_QUEUE, 'Scheduled', 1)
        index_add('Scheduled', fields[2], id)
        index_add('created', fields[3], id)
      end
    end
    for _, id in ipairs(redis.call('ZRANGE', K.active, 0, -1)) do
      local fields = redis.pcall('HMGET', job_key(id), 'status', 'started_at', 'created_at')
      if type(fields) == 'table' and fields[1] == 'InProgress' then
        enter_running(id, DEFAULT_QUEUE, fields[2])
        index_add('created', fields[3], id)
      end
    end
  end
  layout = '2'
end
if layout == '2' then
  for _, queue in ipairs(redis.call('SMEMBERS', K.queues)) do
    local length = redis.call('LLEN', ready_key(queue))
    if length > 0 then
      count(queue, 'Queued', length)
      redis.call('HSET', K.migrating, queue, 0)
    end
  end
  redis.call('SET', K.layout, '3')
end
flush_pending()
adopt_legacy_queue(limit)
local left = index_queued_lists(limit)
flush_pending()

local reserving = P .. 'reserving'
local reached = redis.call('GET', reserving)
if reached ~= 'done' then
  -- By entry (all scores are 0: text order), after the last one looked at, so that
  -- entries removed meanwhile (retention) make none be skipped.
  local from = reached and ('(' .. reached) or '-'
  local entries = redis.call('ZRANGE', BATCH.index, from, '+', 'BYLEX', 'LIMIT', 0, limit)
  for _, entry in ipairs(entries) do
    local batch_id = entry_id(entry)
    local fields = redis.call('HMGET', batch_key(batch_id), 'status', 'conts', 'pending')
    if fields[1] == 'Running' and fields[3] then
      for id in string.gmatch(fields[2] or '', '%S+') do
        if redis.call('EXISTS', job_key(id)) == 0 then
          redis.call('HSET', BATCH.reserved, id, batch_id)
        end
      end
    end
  end
  if #entries < limit then
    redis.call('SET', reserving, 'done')
  else
    redis.call('SET', reserving, entries[#entries])
    left = left + 1
  end
end
return redis.call('LLEN', K.legacy_queue) + left
