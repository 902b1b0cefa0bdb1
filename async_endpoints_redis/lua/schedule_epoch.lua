-- schedule_epoch: the token that names this lifetime of the store's schedules; it stays
-- while the keys do and is new after Redis lost them (restarted without persistence,
-- flushed), which tells the schedulers to store their declared schedules again.
--
-- ARGV[1]  a fresh random token, kept when none is stored
--
-- Returns: the stored token.

-- Beside the schedules' keys (CRON, CRON .. ':' .. id; see async_endpoints_redis/_schedules.py)
-- under a name no schedule id can take.
local EPOCH = P .. 'cron_epoch'

local token = redis.call('GET', EPOCH)
if token then
  return token
end
redis.call('SET', EPOCH, ARGV[1])
return ARGV[1]
