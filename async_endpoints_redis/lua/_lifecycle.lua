-- The job's state machine (included after _bookkeeping.lua): every transition of
-- async_endpoints/_lifecycle.py under the same name, and nothing else changes a job's
-- status. Each transition keeps, in the same script, everything derived from the status:
--
--   the ready order (_ready.lua), the partition lanes (below), the scheduled ZSET (due
--   times on the elapsed clock), the active ZSET (lease deadlines), the running index, the
--   listing indexes (_index.lua: 'created', one per queue of its Queued jobs by
--   created_at, 'Scheduled' by run_at, and one per terminal status by completed_at), the
--   per-queue counters and the retention bookkeeping (_bookkeeping.lua).
--
-- Each transition ends by calling status_changed(key, from, to) (_bookkeeping.lua), the
-- one hook of a status change: the job's batch counts it there (_batch.lua), and the end
-- of a batch's last unfinished job finishes the batch in the same script; a job's end
-- stores its follow-up, and a delivery job's claims and end update its target's webhook
-- (_follow_up.lua).
--
-- Partition keys: the jobs of a key that are not terminal form its lane, in submission
-- order (enqueue, schedule, requeue append). {p}:lanes is a HASH of key -> how many jobs
-- its lane holds; the first job (the one holding the key) is only counted there, and
-- {p}:lane:<key> is a LIST of the ids of the others, in order, each marked in its hash by
-- a field behind = '1'. So a key with one job costs one field of a shared HASH, and no
-- key of its own. Only the first job is ever in the ready order or claimed (or handed
-- over); the others wait with their own status (Queued, or Scheduled: a Scheduled job is
-- in the scheduled ZSET until due, and promotion drops a due one that is behind, which
-- stays Scheduled). The first job keeps its place through retries and recovery; when it
-- ends (complete, dead, cancel), lane_leave makes the next one first and ready in the
-- same script (promoted if it is Scheduled and was due). The last job's end deletes the
-- key's field.
--
-- A running job that is cancelled is Canceled at once, but its attempt may still run
-- for a moment (its process hears of the cancel through the cancel channel): the attempt
-- keeps its key's first place until its process reports the handler's end (a fail or
-- complete with its token, refused: let_go) or its lease runs out (recover). {p}:held is a
-- ZSET of such ids by lease deadline (renew extends it while the process still renews the
-- claim), {p}:held_by a HASH of id -> "<token> <partition key>"; the lane counts the
-- attempt as its first job meanwhile (a requeue of the job joins behind it).

local function lane_key(partition_key)
  return P .. 'lane:' .. partition_key
end

-- Appends a job to its key's lane; true when it is first there (nothing ahead of it),
-- else the caller marks it behind. A job without a key is always first.
local function lane_join(partition_key, id)
  if not partition_key then
    return true
  end
  if redis.call('HINCRBY', K.lanes, partition_key, 1) == 1 then
    return true
  end
  redis.call('RPUSH', lane_key(partition_key), id)
  return false
end

-- lane_join for a new job whose hash is still to be written from `fields` (a flat list):
-- a job behind gets its mark there.
local function lane_join_new(fields, partition_key, id)
  if lane_join(partition_key, id) then
    return true
  end
  fields[#fields + 1] = 'behind'
  fields[#fields + 1] = '1'
  return false
end

-- Follow-ups and webhook deliveries (see _follow_up.lua): {p}:hooked counts the
-- unfinished jobs that hold a follow-up (field follow) or deliver a webhook (field for),
-- and is deleted at 0; while it is absent, the hook of _follow_up.lua costs one GET per
-- script call and reads no job.
local HOOKED = {key = P .. 'hooked'}

function HOOKED.count()
  if HOOKED.n == nil then
    HOOKED.n = tonumber(redis.call('GET', HOOKED.key)) or 0
  end
  return HOOKED.n
end

function HOOKED.add(delta)
  HOOKED.n = HOOKED.count() + delta
  if HOOKED.n > 0 then
    redis.call('SET', HOOKED.key, HOOKED.n)
  else
    redis.call('DEL', HOOKED.key)
  end
end

-- The hash of a new job as a flat list, Queued and created at stamp (ms text), as every
-- script that stores new jobs writes it. Fields that hold their defaults are left out to
-- keep the hash small: retry_count (0), last_updated_at (created_at), request (empty:
-- ''), queue ('default'), partition_key and tenant (none: nil). follow (the follow-up's
-- job tuple as JSON, see _follow_up.lua) and target (the id of the job whose webhook it
-- delivers) are nil for most jobs; a job with either is counted in HOOKED, and one with a
-- follow-up starts with webhook 'Pending 0'.
local function new_job_fields(name, max_retries, request, queue, partition_key, tenant, stamp,
    follow, target)
  local fields = {'name', name, 'status', 'Queued', 'max_retries', max_retries,
    'created_at', stamp}
  if follow or target then
    if follow then
      push(fields, 'follow', follow)
      push(fields, 'webhook', 'Pending 0')
    end
    if target then
      push(fields, 'for', target)
    end
    HOOKED.add(1)
  end
  if request ~= '' then
    push(fields, 'request', request)
  end
  if queue ~= DEFAULT_QUEUE then
    push(fields, 'queue', queue)
  end
  if partition_key then
    push(fields, 'partition_key', partition_key)
  end
  if tenant then
    push(fields, 'tenant', tenant)
  end
  return fields
end

-- Notes the hook fields of a new job (fields: its hash as a flat list), while any job
-- has a follow-up or delivers a webhook (else the hook looks at nothing).
local function note_new_hooks(key, fields)
  if HOOKED.count() == 0 then
    return
  end
  local follow, target = false, false
  for i = 1, #fields, 2 do
    if fields[i] == 'follow' then
      follow = fields[i + 1]
    elseif fields[i] == 'for' then
      target = fields[i + 1]
    end
  end
  hook_fields[key] = {follow, target}
end

-- enqueue: a new job, Queued at the tail of its queue (of its tenant's LIST in it) when
-- ready is true, else waiting behind its partition key (the caller joined its lane).
-- fields: the hash as a flat list.
local function enqueue(key, id, fields, queue, now, tenant, ready)
  redis.call('HSET', key, unpack(fields))
  if ready then
    ready_push(queue, tenant, id)
  else
    redis.call('SADD', K.queues, queue)
  end
  enter_queued(id, queue, now)
  index_add('created', now, id)
  note_new_hooks(key, fields)
  status_changed(key, nil, 'Queued')
end

-- schedule: a new job, Scheduled for delay ms (fields say so: status and run_at); the
-- caller joined its key's lane, if it has one.
local function schedule(key, id, fields, queue, now, clock, delay)
  redis.call('HSET', key, unpack(fields))
  enter_scheduled(key, id, queue, now, clock, delay)
  index_add('created', now, id)
  note_new_hooks(key, fields)
  status_changed(key, nil, 'Scheduled')
end

-- enqueue and claim in one step: a new job handed straight to an idle worker (fields
-- hold its InProgress status, token and started_at).
local function enqueue_claimed(key, id, fields, queue, now, deadline)
  redis.call('HSET', key, unpack(fields))
  redis.call('ZADD', K.active, deadline, id)
  enter_running(id, queue, now)
  index_add('created', now, id)
  note_new_hooks(key, fields)
  status_changed(key, nil, 'InProgress')
end

-- promote: a due Scheduled job becomes Queued in its own queue (no update of its own);
-- one waiting behind its partition key only leaves the scheduled ZSET (it stays
-- Scheduled, and lane_leave promotes it once it is first).
local function promote(key, id)
  local queue, tenant, _, created, behind = placement(key)
  if behind then
    redis.call('ZREM', K.scheduled, id)
    return
  end
  local run_at = redis.call('HGET', key, 'run_at')
  leave_scheduled(key, id, queue)
  if run_at then  -- when it became due, for its claim's due_at
    redis.call('HSET', key, 'status', 'Queued', 'due_at', run_at)
  else
    redis.call('HSET', key, 'status', 'Queued')
  end
  redis.call('HDEL', key, 'run_at')
  ready_push(queue, tenant, id)
  enter_queued(id, queue, run_at or created, key)
  status_changed(key, 'Scheduled', 'Queued')
end

-- Takes one job off the count of its key's lane, and the key's field once none is left;
-- false then.
local function lane_shrink(partition_key)
  if redis.call('HINCRBY', K.lanes, partition_key, -1) > 0 then
    return true
  end
  redis.call('HDEL', K.lanes, partition_key)
  return false
end

-- A job of the key ended (terminal now): it leaves the lane (behind: it was not first).
-- When it was first, the next job becomes first and ready in this script (a Scheduled
-- one once due: at once when promotion already dropped it, else when promoted). Ids of
-- jobs that are missing or no longer waiting are dropped on the way.
local function lane_leave(partition_key, id, behind)
  if not partition_key then
    return
  end
  local lane = lane_key(partition_key)
  if behind then
    redis.call('LREM', lane, 1, id)
    lane_shrink(partition_key)
    return
  end
  while lane_shrink(partition_key) do
    local next_id = redis.call('LPOP', lane)
    if not next_id then
      redis.call('HDEL', K.lanes, partition_key)
      return
    end
    local key = job_key(next_id)
    local status = status_of(key)
    if status == 'Queued' or status == 'Scheduled' or status == 'InProgress' then
      redis.call('HDEL', key, 'behind')
      if status == 'Queued' then
        local queue, tenant = placement(key)
        ready_push(queue, tenant, next_id)
        lanes_moved = true
      elseif status == 'Scheduled' and not redis.call('ZSCORE', K.scheduled, next_id) then
        promote(key, next_id)
        lanes_moved = true
      end
      return
    end
  end
end

-- The cancelled running job id keeps its key's lane for its attempt (token), until the
-- lease deadline (ms, elapsed clock) at the latest.
local function hold(id, token, partition_key, deadline)
  redis.call('ZADD', K.held, deadline, id)
  redis.call('HSET', K.held_by, id, token .. ' ' .. partition_key)
end

-- The held attempt of job id has ended (token: the attempt's; nil: whichever, its lease
-- ran out): the next job of its key becomes first. False when id holds nothing (for
-- that token).
local function let_go(id, token)
  local held = redis.call('HGET', K.held_by, id)
  if not held then
    if not token then  -- an entry of {p}:held without its attempt (never left behind)
      redis.call('ZREM', K.held, id)
    end
    return false
  end
  local holder, partition_key = string.match(held, '^(%S+) (.*)$')
  if token and holder ~= token then
    return false
  end
  redis.call('HDEL', K.held_by, id)
  redis.call('ZREM', K.held, id)
  lane_leave(partition_key, id, false)
  return true
end

-- claim: a Queued job (already popped from its queue) taken by a worker. started: its
-- started_at when an earlier attempt set it (nil: this one does); run_at: whether the
-- hash still holds one (left by the older layout's promotion); created: its created_at;
-- listed and seq: the moment and the sequence number of its Queued index entry
-- (placement).
local function claim(key, id, queue, token, deadline, now, started, run_at, created, listed,
    seq)
  leave_queued(id, queue, listed, seq)
  if listed ~= created then  -- its next entry is written anew (an earlier version's too)
    redis.call('HDEL', key, 'queued_at', 'q')
  elseif seq then
    redis.call('HDEL', key, 'q')
  end
  local stamp = ms(now)
  -- due_at (the claim's due time): when the job was last queued, or the run_at its
  -- promotion kept when later (the due_at of an earlier claim is older than a requeue)
  local was = redis.call('HMGET', key, 'last_updated_at', 'due_at')
  local due = ms(math.max(tonumber(was[1]) or tonumber(created), tonumber(was[2]) or 0))
  if started then
    redis.call('HSET', key, 'status', 'InProgress', 'token', token, 'last_updated_at', stamp,
      'due_at', due)
  else
    redis.call('HSET', key, 'status', 'InProgress', 'token', token, 'last_updated_at', stamp,
      'started_at', stamp, 'due_at', due)
    started = stamp
  end
  if run_at then
    redis.call('HDEL', key, 'run_at')
  end
  push(pending.active_add, deadline, id)
  enter_running(id, queue, started)
  status_changed(key, 'Queued', 'InProgress')
end

-- The undoing of a claim that never started (a job handed to an idle worker that did not
-- take it, a sharded store's resent claim beyond its room): Queued again at the head of
-- its queue, no attempt counted, its start time as before the claim (a job that ran
-- before keeps its first start).
local function unclaim(key, id, now)
  local queue, tenant, _, created, _, listed = placement(key)
  local was = redis.call('HMGET', key, 'started_at', 'last_updated_at')
  leave_running(key, id, queue)
  redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
  -- Set by the claim undone, or by a hand-over (a new job: no last_updated_at, which is
  -- its created_at then); an earlier start is kept.
  if was[1] == (was[2] or created) then
    redis.call('HDEL', key, 'started_at')
  end
  ready_push(queue, tenant, id, true)
  enter_queued(id, queue, listed)
  status_changed(key, 'InProgress', 'Queued', true)  -- true: not an attempt after all
end

-- complete: a running job succeeded. kept: what stays of its request ('' for nothing);
-- queue, started and partition_key: the job's (read by the caller with its token).
-- leave_running and settle, with their writes folded into one HSET and one HDEL.
local function complete(key, id, result, kept, now, clock, queue, started, partition_key)
  local stamp = ms(now)
  push(pending.active_rem, id)
  push(pending.running_rem, index_entry(started, id))
  count(queue, 'InProgress', -1)
  if kept == '' then
    redis.call('HSET', key, 'status', 'Completed', 'result', result, 'completed_at', stamp,
      'last_updated_at', stamp)
    redis.call('HDEL', key, 'token', 'run_at', 'error', 'request')
  else
    redis.call('HSET', key, 'status', 'Completed', 'result', result, 'completed_at', stamp,
      'last_updated_at', stamp, 'request', kept)
    redis.call('HDEL', key, 'token', 'run_at', 'error')
  end
  redis.call('PEXPIRE', key, RETENTION + BACKSTOP_MS)
  push(pending.expiring, ms(clock + RETENTION) .. ' ' .. id .. ' ' .. stamp)
  count(queue, 'Completed', 1)
  index_add('Completed', now, id)
  announce(key, id)
  lane_leave(partition_key, id, false)
  status_changed(key, 'InProgress', 'Completed')
end

-- retry: a failed attempt with retries left: one more attempt counted, Queued at the tail
-- of its queue when delay <= 0, else Scheduled for delay ms (due at clock + delay on the
-- elapsed-time clock, shown as run_at = now + delay).
local function retry(key, id, now, clock, delay, uncounted)
  local queue, tenant = placement(key)
  leave_running(key, id, queue)
  if not uncounted then
    redis.call('HINCRBY', key, 'retry_count', 1)
  end
  if delay <= 0 then
    redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
    redis.call('HDEL', key, 'run_at')
    ready_push(queue, tenant, id)
    enter_queued(id, queue, ms(now), key)
  else
    redis.call('HSET', key, 'status', 'Scheduled', 'run_at', ms(now + delay),
      'last_updated_at', ms(now))
    enter_scheduled(key, id, queue, now, clock, delay)
  end
  status_changed(key, 'InProgress', delay <= 0 and 'Queued' or 'Scheduled')
end

-- dead: a failed attempt with no retry: Failed for good.
local function dead(key, id, now, clock)
  local queue, _, partition_key = placement(key)
  leave_running(key, id, queue)
  settle(key, id, queue, 'Failed', now, clock)
  lane_leave(partition_key, id, false)
  status_changed(key, 'InProgress', 'Failed')
end

-- A failed attempt of a running job (error already recorded): retried after delay ms
-- (nil: no retry) while retries are left, else dead. Returns true when retried.
local function failed_attempt(key, id, now, clock, delay)
  if delay and retries_left(key) then
    retry(key, id, now, clock, delay)
    return true
  end
  dead(key, id, now, clock)
  return false
end

-- recover: a running job whose lease ran out: the lost attempt counts, retried at once.
local RECOVERY_DELAY = 0

local function recover(key, id, error, now, clock)
  redis.call('HSET', key, 'error', error)
  return failed_attempt(key, id, now, clock, RECOVERY_DELAY)
end

-- cancel: a Queued, Scheduled or InProgress job becomes Canceled (a running one loses
-- its claim, and "<id> <token of that claim>" is published on the cancel channel for the
-- process running it: the token lets that process recognise the claim even when the
-- message overtakes the claim's own reply; a running one with a partition key keeps the
-- key for that attempt: hold); a terminal one is left as it is. Returns the status the
-- job had, nil when there is none.
local function cancel(key, id, now, clock)
  local status = status_of(key)
  if not status or TERMINAL[status] then
    return status
  end
  local queue, tenant, partition_key, _, behind, listed, seq = placement(key)
  local kept = false
  if status == 'Queued' then
    if not behind then
      ready_remove(queue, tenant, id)
    end
    leave_queued(id, queue, listed, seq)
    if seq then
      redis.call('HDEL', key, 'q')  -- stale once its entry is gone (see claim)
    end
  elseif status == 'Scheduled' then
    leave_scheduled(key, id, queue)
  elseif status == 'InProgress' then
    local token = field_of(key, 'token') or ''
    if partition_key and token ~= '' then
      hold(id, token, partition_key, tonumber(redis.call('ZSCORE', K.active, id)) or clock)
      kept = true
    end
    leave_running(key, id, queue)
    redis.call('PUBLISH', K.cancel, id .. ' ' .. token)
  end
  if behind then
    redis.call('HDEL', key, 'behind')
  end
  settle(key, id, queue, 'Canceled', now, clock)
  if not kept then
    lane_leave(partition_key, id, behind)
  end
  status_changed(key, status, 'Canceled')
  return status
end

-- requeue: a Failed or Canceled job becomes Queued at the tail of its queue (and of its
-- key's lane: ready only when first there), with
-- retry_count 0 and its error kept; it leaves the retention (its key no longer expires;
-- its expiring entry no longer matches). Returns the status it had (unchanged unless
-- Failed or Canceled), nil when there is none.
local function requeue(key, id, now)
  local status = status_of(key)
  if status ~= 'Failed' and status ~= 'Canceled' then
    return status
  end
  local queue, tenant, partition_key, created = placement(key)
  local kept = redis.call('HMGET', key, 'completed_at', 'held')
  if kept[2] then  -- held past its retention for its webhook: uncounted, unlisted
    redis.call('HDEL', key, 'held')
    index_add('created', created, id)
  else
    count(queue, status, -1)
    index_remove(status, kept[1], id)
  end
  redis.call('PERSIST', key)
  redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
  redis.call('HDEL', key, 'retry_count', 'completed_at', 'run_at')
  if lane_join(partition_key, id) then
    ready_push(queue, tenant, id)
  else
    redis.call('HSET', key, 'behind', '1')
    redis.call('SADD', K.queues, queue)
  end
  enter_queued(id, queue, ms(now), key)
  status_changed(key, status, 'Queued')
  return status
end

-- Deletes up to limit terminal jobs whose retention has passed (see retain), with their
-- counts and index entries; the list is in settlement order, so this stops at the first
-- one still due later. Returns how many entries it took (limit: more may be due).
local function purge(clock, limit)
  for taken = 0, limit - 1 do
    local entry = redis.call('LINDEX', K.expiring, 0)
    if not entry then
      return taken
    end
    local due, id, version = string.match(entry, '^(%d+) (%S+) ?(%d*)$')
    if due and tonumber(due) > clock then
      return taken
    end
    redis.call('LPOP', K.expiring)
    if id then
      local key = job_key(id)
      local status = status_of(key)
      local fields = redis.call('HMGET', key, 'completed_at', 'created_at', 'webhook', 'held')
      if TERMINAL[status] and (version == '' or version == fields[1]) and not fields[4] then
        if version ~= '' then
          count(queue_of(key), status, -1)
          index_remove(status, fields[1], id)
          index_remove('created', fields[2], id)
        end
        if fields[3] and string.sub(fields[3], 1, 8) == 'Pending ' then
          -- Its webhook delivery is live: held (no TTL), readable by id only, until the
          -- delivery ends (_follow_up.lua deletes it then).
          redis.call('HSET', key, 'held', '1')
          redis.call('PERSIST', key)
        else
          redis.call('DEL', key)
        end
      end
    end
  end
  return limit
end
