-- migrate: bring a store written by an older version to this layout; every process runs
-- it at start (and recover.lua moves stray legacy queue entries on each pass).
--
-- - The ready queue of the one-queue layout ({p}:queue) moves into the default queue
--   ({p}:queue:default), ahead of its jobs, in order (up to ARGV[1] ids per call).
-- - A store without the layout marker ({p}:layout) that holds Scheduled or InProgress
--   jobs (all of the default queue then) gets their counts and index entries; Queued jobs
--   of that layout are listed by status (their queue's LIST) but missing from the listing
--   of all jobs, and terminal jobs kept from before are neither counted nor indexed
--   (both leave with the retention once finished).
--
-- ARGV[1]  the most ids moved per call
--
-- Returns: how many ids are left to move (call again while above 0).

clock_ms()
if redis.call('EXISTS', K.layout) == 0 then
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
  flush_pending()
  redis.call('SET', K.layout, '2')
end
migrate_legacy_queue(tonumber(ARGV[1]))
return redis.call('LLEN', K.legacy_queue)
