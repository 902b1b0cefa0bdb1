-- Helpers shared by every script; _scripts.py prepends this file to each of them.
--
-- Two clocks. now_ms() is the Redis server's wall clock: it stamps the job's times
-- (created_at, started_at, ...), which people read. clock_ms() measures durations (lease
-- deadlines, due times of delayed jobs, offer expiry): the store's elapsed-time clock, a
-- key every caller advances to its own reading (the last value it saw plus its process's
-- monotonic time since), so it moves with real time and never jumps when someone steps
-- the wall clock of the Redis host or an app host. Both are integer milliseconds, stored
-- as decimal text.
--
-- Every script gets the clock key as KEYS[1] and the caller's reading as ARGV[1]; the
-- script body sees KEYS and ARGV without them (shadowed below).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function ms(n)
  return string.format('%d', n)
end

-- The elements of an array from index i on (a tail of ARGV, say).
local function tail(array, i)
  local out = {}
  for j = i, #array do
    out[#out + 1] = array[j]
  end
  return out
end

local CLOCK_KEY, CLOCK_READING = KEYS[1], tonumber(ARGV[1]) or 0
local KEYS = tail(KEYS, 2)
local ARGV = tail(ARGV, 2)

-- The elapsed-time clock, advanced to the caller's reading when that is ahead. It starts
-- at the wall clock the first time. Its SET is this script's first write: Redis refuses a
-- script's writes for memory only up to its first one, so a script that starts here takes
-- no new work from a Redis that is out of memory (see even_when_full for the others).
local function clock_ms()
  local stored = tonumber(redis.call('GET', CLOCK_KEY))
  local now = math.max(stored or now_ms(), CLOCK_READING)
  redis.call('SET', CLOCK_KEY, ms(now))
  return now
end

-- A first write that adds nothing (DEL of a key that never exists), so that the script's
-- later writes go through even when Redis is over maxmemory: renewing, settling and
-- recovering jobs already taken must go on while a full Redis refuses new ones.
local function even_when_full()
  redis.call('DEL', CLOCK_KEY .. ':none')
end

-- The job's status, or nil when the key is missing or is not a hash (corrupt).
local function status_of(key)
  local status = redis.pcall('HGET', key, 'status')
  if type(status) ~= 'string' then
    return nil
  end
  return status
end

-- True when the claim token matches: the caller still owns the job.
local function owns(key, token)
  return redis.pcall('HGET', key, 'token') == token
end

-- True while retry_count < max_retries.
local function has_retries_left(key)
  local counts = redis.call('HMGET', key, 'retry_count', 'max_retries')
  return (tonumber(counts[1]) or 0) < (tonumber(counts[2]) or 0)
end

-- Counts one more attempt and makes the job waiting again: Queued at the tail of the
-- ready queue when delay <= 0, else Scheduled for delay ms: due at clock + delay on the
-- elapsed-time clock (the scheduled ZSET's score), shown as run_at = now + delay.
local function requeue(key, id, now, clock, delay, queue, scheduled, active)
  redis.call('HINCRBY', key, 'retry_count', 1)
  redis.call('HDEL', key, 'token')
  redis.call('ZREM', active, id)
  if delay <= 0 then
    redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
    redis.call('HDEL', key, 'run_at')
    redis.call('RPUSH', queue, id)
  else
    redis.call('HSET', key, 'status', 'Scheduled', 'run_at', ms(now + delay),
      'last_updated_at', ms(now))
    redis.call('ZADD', scheduled, clock + delay, id)
  end
end

-- Tells waiters on the done channel that the job is terminal. The message is the id,
-- followed by the job's hash as a JSON array {field, value, ...} unless its values exceed
-- 2 KiB together, so a waiter need not read the job again. Every instance receives every
-- settlement, so a large record is announced by id only (its waiters read it).
local function announce(key, id, done_channel)
  local fields = redis.call('HGETALL', key)
  local size = 0
  for i = 2, #fields, 2 do
    size = size + #fields[i]
  end
  if size <= 2048 then
    redis.call('PUBLISH', done_channel, id .. cjson.encode(fields))
  else
    redis.call('PUBLISH', done_channel, id)
  end
end

-- A terminal job is kept for its retention as measured on the elapsed-time clock: it is
-- listed in the expiring LIST as "<due ms> <id>", in settlement order, and recover.lua
-- deletes it once due. Its key also expires, by the Redis server's wall clock, an hour
-- later: a backstop for a prefix no worker pool looks after any more, which a step of
-- that clock cannot bring forward past the retention unless the step exceeds the hour.
local STEP_ALLOWANCE_MS = 3600000

local function retain(key, id, clock, retention, expiring)
  redis.call('PEXPIRE', key, retention + STEP_ALLOWANCE_MS)
  redis.call('RPUSH', expiring, ms(clock + retention) .. ' ' .. id)
end

-- Deletes up to limit terminal jobs whose retention has passed (see retain); the list is
-- in settlement order, so this stops at the first one still due later.
local function purge(expiring, jobs, clock, limit)
  for _ = 1, limit do
    local entry = redis.call('LINDEX', expiring, 0)
    if not entry then
      return
    end
    local due, id = string.match(entry, '^(%d+) (%S+)$')
    if due and tonumber(due) > clock then
      return
    end
    redis.call('LPOP', expiring)
    local status = id and status_of(jobs .. id)
    if status == 'Completed' or status == 'Failed' or status == 'Canceled' then
      redis.call('DEL', jobs .. id)
    end
  end
end

-- The terminal transition: sets the status, drops the claim, starts the retention
-- countdown and tells waiters on the done channel.
local function settle(key, id, status, now, clock, k, done_channel)
  redis.call('HSET', key, 'status', status, 'completed_at', ms(now), 'last_updated_at', ms(now))
  redis.call('HDEL', key, 'token', 'run_at')
  redis.call('ZREM', k.active, id)
  retain(key, id, clock, k.retention, k.expiring)
  announce(key, id, done_channel)
end

-- An offer: an idle worker's standing request for new jobs, stored as the value
-- "<token base> <slots left> <lease ms> <expires at ms>" under the worker's inbox name
-- (expires at: on the elapsed-time clock).
local function parse_offer(offer)
  local base, slots, lease, expires = string.match(offer, '^(%S+) (%d+) (%d+) (%d+)$')
  return base, tonumber(slots), tonumber(lease), tonumber(expires)
end

-- Ends the inbox's offer, if it has one. Jobs handed to it that the worker has not
-- started (their token is not among ``returned``) go back to the head of the queue,
-- Queued as before, in their order; no attempt is counted. Returns how many went back.
-- k: {offers = HASH, idle = LIST, queue = LIST, active = ZSET, jobs = job key prefix,
--     given = given-list key prefix}
local function withdraw(k, inbox, returned, now)
  local offer = redis.call('HGET', k.offers, inbox)
  if not offer then
    return 0
  end
  redis.call('HDEL', k.offers, inbox)
  redis.call('LREM', k.idle, 0, inbox)
  local base = parse_offer(offer)
  if not base then
    return 0
  end
  local given = redis.call('LRANGE', k.given .. base, 0, -1)
  redis.call('DEL', k.given .. base)
  local started = {}
  for _, token in ipairs(returned) do
    started[token] = true
  end
  local mark = base .. '.'
  local back = 0
  for i = #given, 1, -1 do
    local id = given[i]
    local key = k.jobs .. id
    local token = redis.pcall('HGET', key, 'token')
    if type(token) == 'string' and string.sub(token, 1, #mark) == mark and not started[token] then
      redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
      redis.call('HDEL', key, 'token', 'started_at')
      redis.call('ZREM', k.active, id)
      redis.call('LPUSH', k.queue, id)
      back = back + 1
    end
  end
  return back
end

-- Script body follows.
