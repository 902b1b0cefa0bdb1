-- clock: read the store's elapsed-time clock (see _lib.lua), advancing it to the caller's
-- reading when that is ahead; every process reads it once when its store starts.
--
-- Returns: the elapsed-time clock (ms).

even_when_full()
return clock_ms()
