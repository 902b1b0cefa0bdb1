-- recover: jobs whose lease expired (their worker died or stalled) count one lost
-- attempt; they are Queued again while retries are left, else Failed.
--
-- KEYS[1]  the active ZSET           KEYS[2]  the ready queue (LIST)
-- KEYS[3]  the scheduled ZSET        KEYS[4]  the job key prefix ("{p}:job:")
-- KEYS[5]  the expiring LIST (terminal jobs by due time; due ones are deleted here)
-- ARGV[1]  the most expired claims handled per call
-- ARGV[2]  the error JSON recorded   ARGV[3]  retention of terminal jobs (ms)
-- ARGV[4]  the wake channel          ARGV[5]  the done channel
--
-- Returns: {recovered ids, expired entries seen, the elapsed-time clock}; when the second
-- equals ARGV[1] more may be waiting. Entries whose job is missing or not InProgress are just removed.

even_when_full()
local clock = clock_ms()
local now = now_ms()
purge(KEYS[5], KEYS[4], clock, tonumber(ARGV[1]))
local terminal = {active = KEYS[1], retention = tonumber(ARGV[3]), expiring = KEYS[5]}
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', clock, 'LIMIT', 0, tonumber(ARGV[1]))
local recovered = {}
for _, id in ipairs(expired) do
  local key = KEYS[4] .. id
  if status_of(key) == 'InProgress' then
    redis.call('HSET', key, 'error', ARGV[2])
    if has_retries_left(key) then
      requeue(key, id, now, clock, 0, KEYS[2], KEYS[3], KEYS[1])
    else
      settle(key, id, 'Failed', now, clock, terminal, ARGV[5])
    end
    recovered[#recovered + 1] = id
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
if #recovered > 0 then
  redis.call('PUBLISH', ARGV[4], '')
end
return {recovered, #expired, clock}
