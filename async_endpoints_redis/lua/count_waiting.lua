-- count_waiting: how many jobs are Queued or Scheduled, in every queue.
--
-- Returns: the number of waiting jobs.

return ready_count_all() + redis.call('ZCARD', K.scheduled)
