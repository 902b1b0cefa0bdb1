-- Batches (included after _lifecycle.lua): each batch's counts, kept in step with the
-- status of its jobs by status_changed, which every transition of _lifecycle.lua calls
-- (declared in _bookkeeping.lua, a no-op in the scripts that leave this file out), and
-- the end of a batch: the step that makes its last unfinished job terminal finishes it
-- and stores its continuations, in the same script.
--
--   {p}:batch:<id>         HASH  status (Running, Finished, Canceled), created_at,
--                                finished_at (ms), tenant (only when set), when
--                                (all_terminal or all_completed), conts (its continuations'
--                                ids, space-separated), pending (the continuations to
--                                store, as JSON, until stored), per status its jobs in it
--                                (Queued, ..., Canceled), unfinished (Queued, Scheduled
--                                and InProgress together), expires (the elapsed-clock ms
--                                its retention ends, once nothing is unfinished), nonce and
--                                appended (the create and last append call, so a resent
--                                call is recognised)
--   {p}:batch:<id>:jobs    LIST  its jobs' ids in the order stored, then its
--                                continuations' (the batch's job listing)
--   {p}:batch:<id>:staged:<nonce>  HASH  chunk number -> its job tuples as JSON, while a
--                                large create or append is sent in chunks (batch_stage.lua)
--   {p}:batches            ZSET  every batch's index entry "<created_at ms>:<id>" (scores
--                                0: text order), read newest first
--   {p}:batches:t:<tenant> ZSET  the same, of one tenant's batches
--   {p}:batch-expiring     LIST  "<due ms> <id>" of ended batches, in the order their
--                                retention ends (purged with the terminal jobs)
--   {p}:reserved           HASH  continuation id -> its batch's id, from the batch's
--                                creation until its continuations are stored: an id a
--                                client chooses for a submission cannot take one
--                                (enqueue_many.lua refuses it)
--
-- A job of a batch has the field batch (its id); a continuation also has then = '1' and
-- is not counted. A job tuple (as the batch scripts take new jobs, as pending keeps the
-- continuations and as a job keeps its follow-up) is 10 values: id, name, max_retries,
-- request JSON (''), queue, delay ms (0: none), partition key and tenant ('' for none),
-- its follow-up (its job tuple as JSON text) and the job whose webhook it delivers (''
-- for none). pending is a JSON array of the number 10 followed by the tuples; the
-- 8-value tuples of an older version (no number first) are read as they were.

local BATCH = {fields = 10, expiring = P .. 'batch-expiring', index = P .. 'batches',
  reserved = P .. 'reserved'}

-- Whether a sharded store's pointer in this shard ({p}:at, see _shard_pointers.py)
-- says a job with this id is stored in another shard, or is reserved there (a
-- follow-up's pointer, "<prefix> <parent id>": its parent's script will store it with
-- this id, and that script cannot see this shard). Never there with one shard.
function BATCH.elsewhere(id)
  return redis.call('HEXISTS', P .. 'at', id) == 1
end

local function batch_key(batch_id)
  return P .. 'batch:' .. batch_id
end

-- The hash of a new job of batch batch_id (nil: none, a follow-up) from the tuple at
-- t[i] (width values: 10, or 8 without follow-up and target), created at stamp, as
-- enqueue_many writes it (defaults left out), with its batch (and then, for a
-- continuation). Returns the fields, its queue, delay, partition key and tenant.
function BATCH.job_fields(t, i, batch_id, stamp, continuation, width)
  local queue, delay = t[i + 4], tonumber(t[i + 5]) or 0
  local partition_key = t[i + 6] ~= '' and t[i + 6] or nil
  local tenant = t[i + 7] ~= '' and t[i + 7] or nil
  local follow, target
  if (width or BATCH.fields) == 10 then
    follow, target = t[i + 8] ~= '' and t[i + 8] or nil, t[i + 9] ~= '' and t[i + 9] or nil
  end
  local fields = new_job_fields(t[i + 1], t[i + 2], t[i + 3], queue, partition_key, tenant,
    stamp, follow, target)
  if batch_id then
    push(fields, 'batch', batch_id)
  end
  if continuation then
    push(fields, 'then', '1')
  end
  return fields, queue, delay, partition_key, tenant
end

-- Stores the job of the tuple at t[i] as enqueue would: Queued (ready unless behind its
-- partition key), or Scheduled when delayed; with cancel, Canceled at once (a
-- continuation that must not run: never in a lane, never run; its status change is told
-- to the hook, for its follow-up).
function BATCH.store(t, i, batch_id, now, clock, continuation, cancel, width)
  local id = t[i]
  local key = job_key(id)
  local fields, queue, delay, partition_key, tenant =
    BATCH.job_fields(t, i, batch_id, ms(now), continuation, width)
  if cancel then
    redis.call('HSET', key, unpack(fields))
    index_add('created', now, id)
    settle(key, id, queue, 'Canceled', now, clock)
    status_changed(key, nil, 'Canceled')
    return
  end
  local first = lane_join_new(fields, partition_key, id)
  if delay > 0 then
    fields[4] = 'Scheduled'
    push(fields, 'run_at', ms(now + delay))
    schedule(key, id, fields, queue, now, clock, delay)
  else
    enqueue(key, id, fields, queue, now, tenant, first)
  end
  lanes_moved = true  -- flush_pending wakes idle workers for it
end

-- Stores the batch's pending continuations (Canceled with cancel); one whose id was
-- taken since is left out (never overwritten).
function BATCH.continue(bkey, batch_id, now, clock, cancel)
  local pending = redis.call('HGET', bkey, 'pending')
  if not pending then
    return
  end
  redis.call('HDEL', bkey, 'pending')
  local t = cjson.decode(pending)
  local first, width = 1, 8
  if type(t[1]) == 'number' then
    first, width = 2, t[1]
  end
  for i = first, #t, width do
    redis.call('HDEL', BATCH.reserved, t[i])
    -- Skipped when taken: stored here, or (a sharded store's pointer) elsewhere.
    if redis.call('EXISTS', job_key(t[i])) == 0 and not BATCH.elsewhere(t[i]) then
      redis.call('RPUSH', bkey .. ':jobs', t[i])
      BATCH.store(t, i, batch_id, now, clock, true, cancel, width)
    end
  end
end

-- Nothing of the batch is unfinished any more: a Running batch finishes and its
-- continuations are stored (Canceled when it continues all_completed and a job failed or
-- was cancelled); whatever its status, its retention starts.
function BATCH.ended(bkey, batch_id, status)
  local now, clock = now_ms(), clock_ms()
  if status == 'Running' then
    local c = redis.call('HMGET', bkey, 'Failed', 'Canceled', 'when')
    local failed = (tonumber(c[1]) or 0) + (tonumber(c[2]) or 0)
    redis.call('HSET', bkey, 'status', 'Finished', 'finished_at', ms(now))
    BATCH.continue(bkey, batch_id, now, clock, c[3] == 'all_completed' and failed > 0)
  end
  local due = ms(clock + RETENTION)
  redis.call('HSET', bkey, 'expires', due)
  redis.call('RPUSH', BATCH.expiring, due .. ' ' .. batch_id)
  redis.call('PEXPIRE', bkey, RETENTION + BACKSTOP_MS)
  redis.call('PEXPIRE', bkey .. ':jobs', RETENTION + BACKSTOP_MS)
end

-- The hook: the job at key went from status `from` (nil: just stored) to `to`. Counted in
-- its batch (not a continuation's change, nor one of a batch no longer kept); the end of
-- its last unfinished job ends the batch (BATCH.ended); a job that is unfinished again
-- (requeued) holds an ended batch again (its retention stops). While the store keeps no
-- batch at all (no listing index), one EXISTS per script call is its whole cost.
status_changed = function(key, from, to)
  if BATCH.kept == nil then
    BATCH.kept = redis.call('EXISTS', BATCH.index) == 1
  end
  if not BATCH.kept then
    return
  end
  local marks = redis.pcall('HMGET', key, 'batch', 'then')
  if type(marks) ~= 'table' or not marks[1] or marks[2] then
    return
  end
  local batch_id = marks[1]
  local bkey = batch_key(batch_id)
  local status = redis.call('HGET', bkey, 'status')
  if not status then
    return
  end
  if from then
    redis.call('HINCRBY', bkey, from, -1)
  end
  redis.call('HINCRBY', bkey, to, 1)
  local was_open, open = from ~= nil and not TERMINAL[from], not TERMINAL[to]
  if open and not was_open then
    if redis.call('HINCRBY', bkey, 'unfinished', 1) == 1 and status ~= 'Running' then
      redis.call('HDEL', bkey, 'expires')
      redis.call('PERSIST', bkey)
      redis.call('PERSIST', bkey .. ':jobs')
    end
  elseif was_open and not open then
    if redis.call('HINCRBY', bkey, 'unfinished', -1) == 0 then
      BATCH.ended(bkey, batch_id, status)
    end
  end
end

-- The listing index of the batches of tenant (nil: every batch's).
function BATCH.listing(tenant)
  if tenant then
    return BATCH.index .. ':t:' .. tenant
  end
  return BATCH.index
end

-- Deletes up to limit ended batches whose retention has passed (their hash, job list and
-- index entries), unless a job of theirs was requeued since (expires no longer matches).
-- Returns how many entries it took (limit: more may be due).
function BATCH.purge(clock, limit)
  for taken = 0, limit - 1 do
    local entry = redis.call('LINDEX', BATCH.expiring, 0)
    if not entry then
      return taken
    end
    local due, batch_id = string.match(entry, '^(%d+) (%S+)$')
    if due and tonumber(due) > clock then
      return taken
    end
    redis.call('LPOP', BATCH.expiring)
    if batch_id then
      local bkey = batch_key(batch_id)
      local f = redis.call('HMGET', bkey, 'expires', 'created_at', 'tenant')
      if f[1] == due then
        local listed = index_entry(f[2], batch_id)
        redis.call('ZREM', BATCH.index, listed)
        if f[3] then
          redis.call('ZREM', BATCH.listing(f[3]), listed)
        end
        redis.call('DEL', bkey, bkey .. ':jobs')
      end
    end
  end
  return limit
end
