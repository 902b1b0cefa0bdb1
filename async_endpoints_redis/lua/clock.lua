-- clock: a starting process's first reading of the store's elapsed-time clock (see
-- _lib.lua), and the readings live processes give it.
--
-- The clock moves only when someone calls the store: while no process did (every worker
-- stopped for a deploy, the API instances idle), it stood still, and a process starting
-- from it would grant leases and due times that far in the past (a live handler recovered
-- as soon as a process that stayed up advances the clock; a delay or a retention longer
-- by the gap). So a starting process catches it up with the time that passed since it was
-- last set, as the server's wall clock measured it. But a step of that wall clock (NTP, a
-- resumed VM) looks just like time that passed: taken for it while processes are live,
-- it would expire their leases and make delays due early. So the start goes in two steps
-- (`_connection.py`):
--
-- ARGV[1] = 'probe', ARGV[2] = the probe channel (its name tells the database apart, which
--   pub/sub ignores): changes nothing but, when nobody set the clock for PROBE_AFTER_MS or
--   more by the server's wall clock, publishes on that channel, asking every live
--   process of the store to call with its own reading (whose monotonic clock did not
--   step). Returns {what CLOCK_SET_AT holds ('' if nothing), how many subscribers were
--   asked (-1: not asked)}.
-- ARGV[1] = 'catch-up', ARGV[2] = what the probe saw in CLOCK_SET_AT: the clock, caught up
--   by the wall clock only when nobody set it since the probe (no live process answered).
-- ARGV[1] = 'answer': the clock advanced to the caller's reading, as any call does.
--
-- Nothing is caught up when the clock was last set by a caller that does not record when
-- (an older version of this script).
--
-- Returns (but for 'probe'): the elapsed-time clock (ms).

local PROBE_AFTER_MS = 1000

local mode = ARGV[1]
if mode == 'probe' then
  local seen = redis.call('GET', CLOCK_SET_AT) or ''
  local wall = tonumber(string.match(seen, '^%d+ (%d+)$'))
  local asked = -1
  if wall and now_ms() - wall >= PROBE_AFTER_MS then
    asked = redis.pcall('PUBLISH', ARGV[2], '')
    if type(asked) ~= 'number' then asked = -1 end  -- refused (an ACL): catch up alone
  end
  return {seen, asked}
end

even_when_full()
if mode == 'catch-up' then
  local seen = redis.call('GET', CLOCK_SET_AT) or ''
  local stored = tonumber(redis.call('GET', CLOCK_KEY))
  local set_to, wall = string.match(seen, '^(%d+) (%d+)$')
  if seen == ARGV[2] and stored and set_to and tonumber(set_to) == stored then
    local idle = now_ms() - tonumber(wall)
    if idle > 0 then
      CLOCK_READING = math.max(CLOCK_READING, stored + idle)
    end
  end
end
return clock_ms()
