-- Helpers shared by every script; _scripts.py prepends this file, then _index.lua,
-- _ready.lua, _bookkeeping.lua, _lifecycle.lua and _offers.lua (or the few it needs), to
-- each of them.
--
-- Two clocks. now_ms() is the Redis server's wall clock: it stamps the job's times
-- (created_at, started_at, ...), which people read. clock_ms() measures durations (lease
-- deadlines, due times of delayed jobs, offer expiry): the store's elapsed-time clock, a
-- key every caller advances to its own reading (the last value it saw plus its process's
-- monotonic time since), so it moves with real time and never jumps when someone steps
-- the wall clock of the Redis host or an app host. Both are integer milliseconds, stored
-- as decimal text.
--
-- Every script gets the clock key as KEYS[1] and the store's key prefix ("{p}:", the hash
-- tag and a colon) as KEYS[2], and the caller's clock reading, the store's retention of
-- terminal jobs (ms) and the reading at which the caller gives up on the call (0: never,
-- see too_late) as ARGV[1] to ARGV[3]; the script body sees KEYS and ARGV without them
-- (shadowed below). Every other key name is built from the prefix (K below, and the
-- includes), so every key a script touches lives in the store's one hash slot.
--
-- The prefix is also a key name that nothing ever writes, declared as a key on purpose
-- (the sharded store's pointer scripts, _shard_pointers.py, touch only keys they declare,
-- or declare it too):
-- while an operator moves the slot to another Cluster node (MIGRATE, key by key), Redis
-- refuses a script that declares a missing key with TRYAGAIN, on the node the slot leaves
-- and, after an ASK redirection, on the node it goes to. So no script runs in a slot
-- that is half moved (where a job key it builds could be on the other node, read as
-- missing); the store answers 503 and retries until the move is done.

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
local P, RETENTION = KEYS[2], tonumber(ARGV[2]) or 0
local GIVE_UP_AT = tonumber(ARGV[3]) or 0
local KEYS = tail(KEYS, 3)
local ARGV = tail(ARGV, 4)

-- The store's keys and channels (see _keys.py); per-queue, per-job and per-offer names
-- are built by the functions below and in the includes.
local K = {
  scheduled = P .. 'scheduled', active = P .. 'active', expiring = P .. 'expiring',
  paused = P .. 'paused', counts = P .. 'counts', queues = P .. 'queues',
  running = P .. 'running', offers = P .. 'offers', idle = P .. 'idle',
  legacy_queue = P .. 'queue', layout = P .. 'layout', migrating = P .. 'migrating',
  lanes = P .. 'lanes', held = P .. 'held', held_by = P .. 'held_by',
  wake = P .. 'wake', done = P .. 'done', cancel = P .. 'cancel',
  jobs = P .. 'job:', given = P .. 'given:', inbox = P .. 'inbox:', claims = P .. 'claim:',
  ended = P .. 'ended:', steered = P .. 'steered:',
}

local function job_key(id)
  return K.jobs .. id
end

-- The memo of one cancel or requeue call ({p}:steered:<nonce>), nil when it has no nonce.
local function steered_memo(nonce)
  if not nonce or nonce == '' then
    return nil
  end
  return K.steered .. nonce
end

-- For a call resent after its reply was lost, what its first send answered: {the status
-- before, the job's hash}, or false when the job is gone since; nil for a first send.
local function steered_answer(memo, key)
  local before = memo and redis.call('GET', memo)
  if not before then
    return nil
  end
  if redis.call('EXISTS', key) == 0 then
    return false
  end
  return {before, redis.call('HGETALL', key)}
end

-- Beside the clock, "<clock> <wall>": the value last set and the server's wall clock then
-- (clock.lua: how long nobody has called).
local CLOCK_SET_AT = CLOCK_KEY .. ':at'
-- And its anchor, "<clock> <wall>" too: a value it was set to and the server's wall clock
-- then, kept while a stall's burst lasts (see LEASE_FROM).
local CLOCK_ANCHOR = CLOCK_KEY .. ':anchor'

-- How much wall-clock time since the anchor the clock may lag and still be credited to a
-- lease (ms); an older anchor is renewed. Bounds what a step forward of the wall clock can
-- add to a lease.
local STALL_CREDIT_MS = 60000
-- The least lag counted as a stall: smaller ones are a reading a network hop old, or a
-- process's monotonic clock drifting behind another's.
local STALL_MIN_MS = 500
-- The calls queued in a stall are carried out in a burst when it ends. A lag seen longer
-- than this after the first one is no stall's (the wall clock stepped forward, and the
-- callers are as fresh as ever): re-anchor then.
local STALL_BURST_MS = 2000

-- Where a lease granted by this call starts (ms, elapsed clock): set by clock_ms().
-- Normally the clock itself. But while Redis stalls (CLIENT PAUSE, a long script, a
-- fork) nobody advances the clock, and a call queued in the stall is carried out with the
-- reading it was sent with, seconds old: a lease counted from it would be over as soon as
-- the first caller after the stall brings a reading of now, and another process would
-- recover a job whose worker has not even heard of its claim. So a lease starts where the
-- wall clock says the elapsed clock would be, had it moved through the stall, when that is
-- ahead by STALL_MIN_MS or more (by at most STALL_CREDIT_MS, in the stall's burst). A
-- caller whose reading trails the clock (a process that has not read it for long) tells
-- nothing of a stall here (but see CLOCK_QUIET). Only leases granted use it, never the
-- clock that recovery, delays and expiry read: a step of the wall clock can make the
-- leases granted in the STALL_BURST_MS after it longer (by the step, a lost worker's job
-- recovered that much later), never end a live one.
local LEASE_FROM = 0

-- Where the elapsed clock would be now had it moved with real time (ms), for too_late():
-- set by clock_ms() through carried_out_at() below.
local CARRIED_OUT_AT = 0

-- The last stall seen, "<from> <to> <wall>": the clock's anchor when it began and where
-- the first call of its burst put its end (elapsed clock), and the server's wall clock
-- then. A lease running when it began could not be renewed through it: recovery gives
-- such a lease the stall's length on top (expired_leases below), so that a worker whose
-- handler ended in the stall settles it afterwards instead of recovery running it again.
-- A later stall replaces the record.
local CLOCK_STALL = CLOCK_KEY .. ':stall'

-- The last quiet spell, "<from> <to>" (elapsed clock): a call found that nobody had called
-- for QUIET_MIN_MS or more (by the clock and by the wall clock), from the clock's value then
-- to its reading. A stall looks so to the first caller after it whose reading is fresh (a
-- call sent in the stall's last moments, or sent after it while the calls held in it gave
-- up): it cannot tell a stall from a quiet spell. So for QUIET_GRACE_MS after, a recovery
-- whose process met trouble reaching Redis lately (recover.lua's ARGV[3]: it may have lived
-- through a stall) leaves the leases whose deadline fell in the spell (their workers may
-- have been trying to renew or settle through it); and a call sent during the spell and
-- carried out only now (its reading inside it, by STALL_MIN_MS or more) shows it was a
-- stall: that is recorded (CLOCK_STALL) as if the call had come first.
local CLOCK_QUIET = CLOCK_KEY .. ':quiet'
local QUIET_MIN_MS = 1000
local QUIET_GRACE_MS = STALL_BURST_MS

-- The first call to find the clock behind real time by a stall (or a step of the wall
-- clock), "<real> <wall>": where it put the clock had it moved through (elapsed clock)
-- and the server's wall clock then; the calls carried out in the STALL_BURST_MS after
-- (the rest of the stall's burst; the record expires then) count from it, whatever their
-- own readings and the anchor say (a stall longer than STALL_CREDIT_MS renews the anchor
-- at its first call).
local CLOCK_REAL = CLOCK_KEY .. ':real'

-- Sets CARRIED_OUT_AT: the clock ``now``, or later by the wall clock since the anchor
-- (``by_anchor``: the anchor's value moved on by the server's wall clock since it was
-- set, nil without one) or since the burst's record (``real``, CLOCK_REAL's value); the
-- first call of a burst records it (not while a record stands, trusted or not: a burst
-- is recorded once; one from ahead of the wall clock, stepped back since, does not
-- count). Unlike LEASE_FROM it may be ahead by a step of the wall clock, for
-- the STALL_BURST_MS after the step: it only refuses calls, which their callers send
-- again.
local function carried_out_at(now, wall, by_anchor, real)
  local at = math.max(now, by_anchor or now)
  local first, first_wall = string.match(real or '', '^(%d+) (%d+)$')
  local after = first and wall - tonumber(first_wall)
  if after and after >= 0 and after <= STALL_BURST_MS then
    at = math.max(at, tonumber(first) + after)
  elseif at >= now + STALL_MIN_MS and not (after and after >= 0) then
    redis.call('SET', CLOCK_REAL, ms(at) .. ' ' .. ms(wall), 'PX', STALL_BURST_MS)
  end
  CARRIED_OUT_AT = at
end

-- The elapsed-time clock, advanced to the caller's reading when that is ahead. It starts
-- at the wall clock the first time. Its MSET is this script's first write: Redis refuses a
-- script's writes for memory only up to its first one, so a script that starts here takes
-- no new work from a Redis that is out of memory (see even_when_full for the others).
-- Sets LEASE_FROM and CARRIED_OUT_AT, and records a stall it is the first call after
-- (CLOCK_STALL).
local function clock_ms()
  local got = redis.call('MGET', CLOCK_KEY, CLOCK_ANCHOR, CLOCK_QUIET, CLOCK_SET_AT, CLOCK_REAL)
  local stored = tonumber(got[1])
  local wall = now_ms()
  local now = math.max(stored or wall, CLOCK_READING)
  local anchor = ms(now) .. ' ' .. ms(wall)
  local stall = nil
  LEASE_FROM = now
  local set_to, set_wall = string.match(got[2] or '', '^(%d+) (%d+)$')
  local since = set_to and wall - tonumber(set_wall)
  local by_anchor = set_to and stored and tonumber(set_to) + since
  if since and stored and since <= STALL_CREDIT_MS then
    local lag = since - (now - tonumber(set_to))
    if CLOCK_READING < stored then
      anchor = got[2]  -- a trailing reading: leave the anchor to the others
      local from, to = string.match(got[3] or '', '^(%d+) (%d+)$')
      from, to = tonumber(from), tonumber(to)
      if from and CLOCK_READING >= from and CLOCK_READING <= to - STALL_MIN_MS
          and now < to + QUIET_GRACE_MS then  -- held in the quiet spell: it was a stall
        local known = string.match(redis.call('GET', CLOCK_STALL) or '', '^(%d+) ')
        if known ~= ms(from) then
          stall = ms(from) .. ' ' .. ms(to) .. ' ' .. ms(wall)
        end
      end
    elseif lag >= STALL_MIN_MS then
      local from, seen = string.match(redis.call('GET', CLOCK_STALL) or '',
        '^(%d+) %d+ (%d+)$')
      local known = from == set_to
      if not known or wall - tonumber(seen) <= STALL_BURST_MS then
        LEASE_FROM = now + lag
        anchor = got[2]
        if not known then  -- the first call of the burst: the stall ends here
          stall = set_to .. ' ' .. ms(LEASE_FROM) .. ' ' .. ms(wall)
        end
      elseif wall - (tonumber(string.match(got[4] or '', ' (%d+)$')) or 0) < STALL_MIN_MS then
        -- The burst is over and calls kept setting the clock: the wall clock stepped, and
        -- the anchor, renewed here, stayed behind. (With nobody calling for a while, this
        -- call may have been held in a second stall: the anchor still measures it.)
        by_anchor = nil
      end
    end
  end
  redis.call('MSET', CLOCK_KEY, ms(now), CLOCK_SET_AT, ms(now) .. ' ' .. ms(wall),
    CLOCK_ANCHOR, anchor)
  carried_out_at(now, wall, by_anchor, got[5])
  if stall then
    redis.call('SET', CLOCK_STALL, stall)
  elseif stored and LEASE_FROM == now and now - stored >= QUIET_MIN_MS
      and now - stored <= STALL_CREDIT_MS then
    -- Quiet by the wall clock too (a caller's reading that leaps alone, as a test's
    -- manual clock does, is no spell).
    -- An earlier spell keeps its record while its grace lasts.
    local last_wall = tonumber(string.match(got[4] or '', ' (%d+)$'))
    local earlier = tonumber(string.match(got[3] or '', ' (%d+)$'))
    if last_wall and wall - last_wall >= QUIET_MIN_MS
        and not (earlier and now < earlier + QUIET_GRACE_MS) then
      redis.call('SET', CLOCK_QUIET, ms(stored) .. ' ' .. ms(now))
    end
  end
  return now
end

-- Whether the caller had given up on this call before Redis carried it out (after
-- clock_ms()): a submission held in a stall (a frozen server, CLIENT PAUSE) is carried out
-- when the stall ends, after its caller was told it failed; it must store nothing then,
-- or the job the caller sends again runs twice. The caller sets the reading at which it
-- gives up less the time a reply takes back (GIVE_UP_AT, _scripts.py); CARRIED_OUT_AT
-- judges stalls of up to STALL_CREDIT_MS (the first call after a longer one too).
local function too_late()
  return GIVE_UP_AT > 0 and CARRIED_OUT_AT > GIVE_UP_AT
end

-- The deadlines recovery leaves alone for now, as {low, high} spans (high excluded): those
-- of leases running when the last stall began (CLOCK_STALL), until the clock has passed
-- them by the stall's length, and (when gentle) those that fell in the last quiet spell
-- (CLOCK_QUIET), for QUIET_GRACE_MS after it. A record that spares nothing any more is
-- dropped (as is one ahead of the clock: a clock set back, its key lost, keeps nothing).
local function spared_deadlines(clock, gentle)
  local got = redis.call('MGET', CLOCK_STALL, CLOCK_QUIET)
  local spans = {}
  local from, to = string.match(got[1] or '', '^(%d+) (%d+) ')
  from, to = tonumber(from), tonumber(to)
  if from then
    local spared = math.max(from, clock - (to - from))
    if spared >= to or from > clock then
      redis.call('DEL', CLOCK_STALL)
    else
      spans[#spans + 1] = {spared, to}
    end
  end
  from, to = string.match(got[2] or '', '^(%d+) (%d+)$')
  from, to = tonumber(from), tonumber(to)
  if from then
    if clock >= to + QUIET_GRACE_MS or from > clock then
      redis.call('DEL', CLOCK_QUIET)
    elseif gentle then
      spans[#spans + 1] = {from, to}
    end
  end
  table.sort(spans, function(a, b) return a[1] < b[1] end)
  return spans
end

-- Ids of up to limit running jobs whose lease ran out by the clock (their deadline is at
-- or before it), but for those spared_deadlines leaves alone. Oldest deadlines first, mostly.
local function expired_leases(clock, limit, gentle)
  local ids, low = {}, nil  -- nil: from -inf
  local function take(high)
    local found = redis.call('ZRANGEBYSCORE', K.active, low and ms(low) or '-inf', high,
      'LIMIT', 0, limit - #ids)
    for _, id in ipairs(found) do
      ids[#ids + 1] = id
    end
  end
  for _, span in ipairs(spared_deadlines(clock, gentle)) do
    if #ids < limit and (not low or span[1] > low) then
      take(span[1] > clock and ms(clock) or '(' .. ms(span[1]))
    end
    if not low or span[2] > low then
      low = span[2]
    end
  end
  if #ids < limit and (not low or low <= clock) then
    take(ms(clock))
  end
  return ids
end

-- A first write that adds nothing (DEL of a key that never exists), so that the script's
-- later writes go through even when Redis is over maxmemory: renewing, settling and
-- recovering jobs already taken must go on while a full Redis refuses new ones.
local function even_when_full()
  redis.call('DEL', CLOCK_KEY .. ':none')
end

-- A field of a job's hash, or nil when it is absent or the key is not a hash (corrupt).
local function field_of(key, name)
  local value = redis.pcall('HGET', key, name)
  if type(value) ~= 'string' then
    return nil
  end
  return value
end

-- The job's status, or nil when the key is missing or is not a hash (corrupt).
local function status_of(key)
  return field_of(key, 'status')
end

local TERMINAL = {Completed = true, Failed = true, Canceled = true}

-- True when the claim token matches: the caller still owns the job.
local function owns(key, token)
  return redis.pcall('HGET', key, 'token') == token
end

-- Tells waiters on the done channel that the job is terminal. The message is the id,
-- followed by the job's hash as a JSON array {field, value, ...} unless its values exceed
-- 2 KiB together, so a waiter need not read the job again. Every instance receives every
-- settlement, so a large record is announced by id only (its waiters read it).
local function announce(key, id)
  local fields = redis.call('HGETALL', key)
  local size = 0
  for i = 2, #fields, 2 do
    size = size + #fields[i]
  end
  if size <= 2048 then
    redis.call('PUBLISH', K.done, id .. cjson.encode(fields))
  else
    redis.call('PUBLISH', K.done, id)
  end
end

-- The job as one reply value: its id followed by its hash as a JSON array {field, value,
-- ...} (the form of done and inbox messages), which a client parses far faster than a
-- nested array of many values.
local function job_text(key, id)
  return id .. cjson.encode(redis.call('HGETALL', key))
end

-- Tells idle workers everywhere that work may be claimable (the payload is not used).
local function wake()
  redis.call('PUBLISH', K.wake, '')
end

-- Live events (see _events.py): the status changes and progress of a watched job are
-- published on {p}:events, and only a watched job's, so that the others cost one EXISTS
-- per script. {p}:watched is a ZSET of the ids that some process watches, scored by when
-- the watch lapses (ms, server clock; each watching process renews its own, lua/watch.lua).
-- Terminal statuses are told on the done channel (announce) instead.
local WATCHED, EVENTS = P .. 'watched', P .. 'events'
local anything_watched = nil

local function is_watched(id)
  if anything_watched == nil then
    anything_watched = redis.call('EXISTS', WATCHED) == 1
  end
  return anything_watched and redis.call('ZSCORE', WATCHED, id) ~= false
end

-- Tells the watchers of the job at key its status, when it is watched: 's', its id, then
-- its hash as a JSON array {field, value, ...} without the claim token and the request.
local function tell_status(key, id)
  if not is_watched(id) then
    return
  end
  local fields = redis.call('HGETALL', key)
  local shown = {}
  for i = 1, #fields, 2 do
    if fields[i] ~= 'token' and fields[i] ~= 'request' then
      shown[#shown + 1] = fields[i]
      shown[#shown + 1] = fields[i + 1]
    end
  end
  redis.call('PUBLISH', EVENTS, 's' .. id .. cjson.encode(shown))
end
