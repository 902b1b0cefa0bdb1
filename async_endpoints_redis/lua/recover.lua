-- recover: jobs whose lease expired (their worker died or stalled) count one lost
-- attempt; they are Queued again while retries are left, else Failed. Also deletes
-- terminal jobs whose retention has passed, drops lapsed watches, and moves ids left in the ready queue of
-- the older one-queue layout ({p}:queue) into the default queue (see migrate.lua).
--
-- ARGV[1]  the most expired claims handled per call
-- ARGV[2]  the error JSON recorded
-- ARGV[3]  1 when the caller met trouble reaching Redis lately (a stall, maybe): leases
--          whose deadline fell in the last quiet spell are left for a while (_lib.lua)
--
-- Returns: {recovered ids, the most entries one of its parts took (expired claims, held
-- keys, jobs and batches whose retention passed), the elapsed-time clock}; when the second
-- equals ARGV[1] more may be waiting. Entries whose job is missing or not InProgress are
-- just removed. The partition keys kept by attempts of cancelled jobs whose lease ran out
-- go to their next jobs (let_go in _lifecycle.lua).

even_when_full()
local clock = clock_ms()
local now = now_ms()
local limit = tonumber(ARGV[1])
local purged = math.max(purge(clock, limit),
  BATCH.purge(clock, limit))  -- ended batches whose retention passed (_batch.lua)
local moved = adopt_legacy_queue(limit)
-- Lapsed watches (_lib.lua): watch.lua drops them too, but only when some process watches
-- again; left, they make every script look the watched set up for its job.
redis.call('ZREMRANGEBYSCORE', WATCHED, '-inf', now)
index_queued_lists(limit)
local held = redis.call('ZRANGEBYSCORE', K.held, '-inf', clock, 'LIMIT', 0, limit)
for _, id in ipairs(held) do
  let_go(id, nil)
end
local expired = expired_leases(clock, limit, ARGV[3] == '1')  -- a stall's grace: _lib.lua
local recovered = {}
for _, id in ipairs(expired) do
  local key = job_key(id)
  if status_of(key) == 'InProgress' then
    recover(key, id, ARGV[2], now, clock)
    recovered[#recovered + 1] = id
  else
    redis.call('ZREM', K.active, id)
  end
end
flush_pending()
if #recovered > 0 or moved > 0 then
  wake()
end
return {recovered, math.max(#expired, #held, purged), clock}
