-- claim: make due Scheduled jobs Queued, then claim up to a limit of Queued jobs, oldest
-- first, each with its own token and lease.
--
-- KEYS[1]  the ready queue (LIST)    KEYS[2]  the scheduled ZSET
-- KEYS[3]  the active ZSET           KEYS[4]  the job key prefix ("{p}:job:")
-- ARGV[1]  how many jobs to claim    ARGV[2]  lease (ms)
-- ARGV[3]  a random token base; claim n gets the token "<base>.<n>"
-- ARGV[4]  the most due Scheduled jobs moved per call
-- ARGV[5]  the most ids popped per call (bounds the work spent skipping bad ids)
-- KEYS[5]  this call's memo (LIST of the ids it claimed), named after ARGV[3]
-- KEYS[6]  the offers HASH           KEYS[7]  the idle LIST
-- KEYS[8]  the given-list key prefix ("{p}:given:")
-- ARGV[6]  the claimer's inbox: its offer, if any, ends first (see withdraw.lua), so the
--          jobs handed to it but not started are claimed again from the head of the queue
-- ARGV[7]  the wake channel, for such jobs left over beyond the limit
-- ARGV[8], ...  tokens of the offer's jobs the claimer started
--
-- A call is safe to resend: when its reply was lost (redis-py resends once, and the store
-- reuses the token base of a call that went unanswered), the memo holds what the first
-- send claimed, and those claims are returned again instead of claiming more jobs and
-- stranding the first ones until their lease runs out.
--
-- Returns: an array of {id, {field, value, ...}} for the claimed jobs (their whole hash).
-- Ids whose hash is missing, not a hash, not Queued or lacking numeric counters are
-- dropped from the queue and never stall it.
-- (retry_count may be absent: it is 0 until the first retry.)

local clock = clock_ms()
local now = now_ms()
local k = {offers = KEYS[6], idle = KEYS[7], queue = KEYS[1], active = KEYS[3],
  jobs = KEYS[4], given = KEYS[8]}
local back = withdraw(k, ARGV[6], tail(ARGV, 8), now)

local remembered = redis.call('LRANGE', KEYS[5], 0, -1)
if #remembered > 0 then
  local again = {}
  local prefix = ARGV[3] .. '.'
  for _, id in ipairs(remembered) do
    local key = KEYS[4] .. id
    local token = redis.pcall('HGET', key, 'token')
    if type(token) == 'string' and string.sub(token, 1, #prefix) == prefix then
      again[#again + 1] = {id, redis.call('HGETALL', key)}
    end
  end
  return again
end

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', clock, 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  local key = KEYS[4] .. id
  if status_of(key) == 'Scheduled' then
    -- Only the status: the promotion happens lazily here, so it is no update of its own.
    redis.call('HSET', key, 'status', 'Queued')
    redis.call('RPUSH', KEYS[1], id)
  end
end

local function claimable(key)
  if status_of(key) ~= 'Queued' then
    return false
  end
  local fields = redis.call('HMGET', key, 'name', 'retry_count', 'max_retries', 'created_at')
  return fields[1] and tonumber(fields[2] or '0') and tonumber(fields[3]) and tonumber(fields[4])
end

local limit = tonumber(ARGV[1])
local deadline = clock + tonumber(ARGV[2])
local claimed = {}
for n = 1, tonumber(ARGV[5]) do
  if #claimed >= limit then
    break
  end
  local id = redis.call('LPOP', KEYS[1])
  if not id then
    break
  end
  local key = KEYS[4] .. id
  if claimable(key) then
    redis.call('HSET', key, 'status', 'InProgress', 'token', ARGV[3] .. '.' .. n,
      'last_updated_at', ms(now))
    redis.call('HSETNX', key, 'started_at', ms(now))
    redis.call('HDEL', key, 'run_at')
    redis.call('ZADD', KEYS[3], deadline, id)
    claimed[#claimed + 1] = {id, redis.call('HGETALL', key)}
    redis.call('RPUSH', KEYS[5], id)
  end
end
if #claimed > 0 then
  redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[2]))
end
if back > 0 and redis.call('LLEN', KEYS[1]) > 0 then
  redis.call('PUBLISH', ARGV[7], '')
end
return claimed
