-- count_waiting: how many jobs are Queued or Scheduled.
--
-- KEYS[1]  the ready queue (LIST)    KEYS[2]  the scheduled ZSET
--
-- Returns: the number of waiting jobs.

return redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
