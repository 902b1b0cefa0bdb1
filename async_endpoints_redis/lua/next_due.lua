-- next_due: how long until the earliest Scheduled job becomes due, by the server clock.
--
-- KEYS[1]  the scheduled ZSET
--
-- Returns: milliseconds until it is due (0 when due already), or -1 when none is
-- Scheduled.

local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  return -1
end
return math.max(0, tonumber(first[2]) - now_ms())
