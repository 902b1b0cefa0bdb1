-- count_waiting: how many jobs are Queued or Scheduled, in every queue (their counters:
-- O(number of queues)), those waiting behind their partition key included.
--
-- Returns: the number of waiting jobs.

return waiting_count()
