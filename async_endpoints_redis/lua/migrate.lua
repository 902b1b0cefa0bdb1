-- migrate: bring a store written by an older version to this layout; every process runs
-- it at start (and recover.lua moves stray legacy queue entries on each pass).
--
-- - The ready queue of the one-queue layout ({p}:queue) moves into the default queue
--   ({p}:queue:default), ahead of its jobs, in order (up to ARGV[1] ids per call).
-- - A store without the layout marker ({p}:layout) that holds Scheduled or InProgress
--   jobs (all of the default queue then) gets their counts; terminal jobs kept from
--   before are neither counted nor indexed (they age out with the retention).
--
-- ARGV[1]  the most ids moved per call
--
-- Returns: how many ids are left to move (call again while above 0).

clock_ms()
if redis.call('EXISTS', K.layout) == 0 then
  if redis.call('EXISTS', K.counts) == 0 then
    local scheduled = redis.call('ZCARD', K.scheduled)
    local active = redis.call('ZCARD', K.active)
    if scheduled > 0 then
      count(DEFAULT_QUEUE, 'Scheduled', scheduled)
    end
    if active > 0 then
      count(DEFAULT_QUEUE, 'InProgress', active)
    end
  end
  flush_pending()
  redis.call('SET', K.layout, '2')
end
migrate_legacy_queue(tonumber(ARGV[1]))
return redis.call('LLEN', K.legacy_queue)
