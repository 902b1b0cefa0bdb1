-- schedule_time: the Redis server's wall clock (ms), which due schedules are read by.
--
-- Returns: the time in ms.

return now_ms()
