-- clock: read the store's elapsed-time clock (see _lib.lua) for a process whose store
-- starts (every process calls it once then, with no reading of its own yet), advancing it
-- to the caller's reading when that is ahead.
--
-- The clock moves only when someone calls the store: while no process did (every worker
-- stopped for a deploy, the API instances idle), it stood still, and a process starting
-- from it would grant leases and due times that far in the past (a live handler recovered
-- as soon as a process that stayed up advances the clock; a delay or a retention longer
-- by the gap). So it first catches up with the time that passed since it was last set, as
-- the server's wall clock measured it. Only here: a step of that wall clock moves the
-- clock only if it falls in such a gap (a live worker sets the clock every second or so,
-- which ends the gap) and a process starts before anyone else calls; elsewhere the clock
-- follows the callers' monotonic readings alone. Nothing is caught up when the clock was
-- last set by a caller that does not record when (an older version of this script).
--
-- Returns: the elapsed-time clock (ms).

even_when_full()
local stored = tonumber(redis.call('GET', CLOCK_KEY))
local set_to, wall = string.match(redis.call('GET', CLOCK_SET_AT) or '', '^(%d+) (%d+)$')
if stored and set_to and tonumber(set_to) == stored then
  local idle = now_ms() - tonumber(wall)
  if idle > 0 then
    CLOCK_READING = math.max(CLOCK_READING, stored + idle)
  end
end
return clock_ms()
