-- What every transition keeps in step with a job's status (included after _ready.lua,
-- before _lifecycle.lua): the per-queue counters, the buffered writes of the hot
-- transitions, the Queued, running and Scheduled indexes, and the retention of terminal
-- jobs.
--
-- Counters: {p}:counts is a HASH of "<queue>:<status>" -> how many jobs of that queue have
-- that status (terminal jobs while retained). A job's hash leaves its queue out while it
-- is the default one, and its partition_key and tenant while it has none.
--
-- Running index: {p}:running is one ZSET (scores 0) of index entries
-- "<started_at>:<id>" (see _index.lua) of the InProgress jobs, in started_at order.

local STEP_ALLOWANCE_MS = 3600000
-- How long past its retention a terminal job's (or ended batch's) key lasts should no
-- recovery pass delete it (see retain): a week, so that every worker pool may be down
-- that long without a key vanishing before the pass that removes its index entries and
-- counts along with it.
local BACKSTOP_MS = 7 * 24 * 3600000

-- Batched writes. Counter changes are summed in the script, and the hot transitions
-- (claim, complete) leave their writes to the active and running ZSETs and the expiring
-- LIST in buffers, as index_add does; flush_pending(), which every script that changes a
-- job calls before it returns, writes them: one command per structure for a whole batch
-- of jobs instead of one per job. Nothing reads those structures in between.
local count_deltas = {}
local pending = {active_add = {}, active_rem = {}, running_add = {}, running_rem = {},
  expiring = {}}

local function count(queue, status, delta)
  local field = queue .. ':' .. status
  count_deltas[field] = (count_deltas[field] or 0) + delta
end

-- The counter of the webhook deliveries that are Queued or Scheduled (field
-- ':Deliveries' of {p}:counts: no status is named so), kept by _follow_up.lua.
local DELIVERIES_WAITING = ':Deliveries'

-- How many jobs are Queued or Scheduled, in every queue together, webhook deliveries left
-- out (as of this script's start: its own count changes are written by flush_pending).
local function waiting_count()
  local fields = redis.call('HGETALL', K.counts)
  local total = 0
  for i = 1, #fields, 2 do
    local status = string.match(fields[i], ':(%a+)$')
    if status == 'Queued' or status == 'Scheduled' then
      total = total + math.max(0, tonumber(fields[i + 1]) or 0)
    elseif fields[i] == DELIVERIES_WAITING then
      total = total - math.max(0, tonumber(fields[i + 1]) or 0)
    end
  end
  return math.max(0, total)
end

-- The listing index of a queue's Queued jobs (by when each became due there, then id;
-- entries in the short form of queued_entry): 'Q:<#queue>:<queue>', so that no queue's index name or
-- chunk names collide with another's.
local function queued_index(queue)
  return 'Q:' .. #queue .. ':' .. queue
end

-- A job becomes or stops being Queued: its count and its entry in its queue's index, by
-- the moment (ms) it became due there, then by its sequence number, the order workers
-- take the queue in (but for tenants taking turns and jobs waiting behind their key):
-- its created_at when submitted, else the queued_at field, which records the moment (a
-- retry's or requeue's time, a delay's run_at) when enter_queued is given the job's key.
-- The sequence number (its field q, see queued_seq in _index.lua) orders the jobs queued in one
-- millisecond as they came; leave_queued is given the moment and the number the job
-- entered with (placement's `listed` and `seq`; a job an older version queued has none).

local function enter_queued(id, queue, moment, key)
  local seq = queued_seq(moment)
  count(queue, 'Queued', 1)
  index_add_entry(queued_index(queue), queued_entry(moment, id, seq))
  if key then
    redis.call('HSET', key, 'queued_at', moment, 'q', seq)
  else
    redis.call('HSET', job_key(id), 'q', seq)
  end
  tell_status(job_key(id), id)  -- each caller entered the job's status already
end

local function leave_queued(id, queue, moment, seq)
  count(queue, 'Queued', -1)
  index_remove_entry(queued_index(queue), queued_entry(moment, id, seq))
end

-- The follow-up hook's fields (follow and for, see _follow_up.lua) of the jobs whose hash
-- this script read anyway (placement, a claim, a completion, a new job's fields): key ->
-- {follow or false, for or false}. The hook takes a job's entry (and forgets it), and
-- reads the hash itself only for a job that has none, so a transition costs no read of
-- its own while webhooks are pending.
local hook_fields = {}

-- Where a job waits: its queue, tenant (nil: none), partition key (nil: none),
-- created_at, whether it waits behind another job of its key, and the moment and the
-- sequence number its Queued index entry has (listed: queued_at, else created_at; seq:
-- q, nil for none), in one read (which notes its hook fields too).
local function placement(key)
  local fields = redis.pcall('HMGET', key, 'queue', 'tenant', 'partition_key', 'created_at',
    'behind', 'follow', 'for', 'queued_at', 'q')
  if type(fields) ~= 'table' then
    return DEFAULT_QUEUE, nil, nil, nil, false, nil, nil
  end
  hook_fields[key] = {fields[6] or false, fields[7] or false}
  return fields[1] or DEFAULT_QUEUE, fields[2] or nil, fields[3] or nil, fields[4] or nil,
    fields[5] == '1', fields[8] or fields[4] or nil, fields[9] or nil
end

-- One command per at most 500 values of `values`: command(key, ...values).
local function write_all(command, key, values)
  for first = 1, #values, 500 do
    redis.call(command, key, unpack(values, first, math.min(first + 499, #values)))
  end
end

-- Set when a job became ready because the one ahead of it in its lane ended: the script
-- wakes idle workers (flush_pending) for it.
local lanes_moved = false

local function flush_pending()
  if lanes_moved then
    lanes_moved = false
    wake()
  end
  write_all('ZADD', K.active, pending.active_add)
  write_all('ZADD', K.running, pending.running_add)
  write_all('ZREM', K.active, pending.active_rem)
  write_all('ZREM', K.running, pending.running_rem)
  write_all('RPUSH', K.expiring, pending.expiring)
  pending = {active_add = {}, active_rem = {}, running_add = {}, running_rem = {},
    expiring = {}}
  index_flush()
  for field, delta in pairs(count_deltas) do
    if delta ~= 0 then
      redis.call('HINCRBY', K.counts, field, delta)
    end
  end
  count_deltas = {}
end

local function push(list, a, b)
  list[#list + 1] = a
  if b ~= nil then
    list[#list + 1] = b
  end
end

-- True while retry_count < max_retries: the one place that decides whether a failed
-- attempt may be retried.
local function retries_left(key)
  local counts = redis.call('HMGET', key, 'retry_count', 'max_retries')
  return (tonumber(counts[1]) or 0) < (tonumber(counts[2]) or 0)
end

local function enter_running(id, queue, started)
  push(pending.running_add, 0, index_entry(started, id))
  count(queue, 'InProgress', 1)
  tell_status(job_key(id), id)
end

-- Leaves InProgress: the claim's token, lease and running entry go.
local function leave_running(key, id, queue)
  local started = redis.call('HGET', key, 'started_at')
  redis.call('HDEL', key, 'token')
  redis.call('ZREM', K.active, id)
  redis.call('ZREM', K.running, index_entry(started, id))
  count(queue, 'InProgress', -1)
end

local function enter_scheduled(key, id, queue, now, clock, delay)
  redis.call('ZADD', K.scheduled, clock + delay, id)
  index_add('Scheduled', now + delay, id)
  count(queue, 'Scheduled', 1)
  tell_status(key, id)
end

local function leave_scheduled(key, id, queue)
  local run_at = redis.call('HGET', key, 'run_at')
  redis.call('ZREM', K.scheduled, id)
  index_remove('Scheduled', run_at, id)
  count(queue, 'Scheduled', -1)
end

-- A terminal job is kept for its retention as measured on the elapsed-time clock: it is
-- listed in the expiring LIST as "<due ms> <id> <completed_at ms>", in settlement order,
-- and purge deletes it once due, unless it has been requeued since (its completed_at no
-- longer matches). Its key also expires, by the Redis server's wall clock, BACKSTOP_MS
-- later: a backstop for a prefix no worker pool looks after any more, which a step of
-- that clock cannot bring forward past the retention unless the step exceeds it. (A key
-- gone before purge reaches its entry leaves its index entries and counts behind.)
local function retain(key, id, now, clock)
  redis.call('PEXPIRE', key, RETENTION + BACKSTOP_MS)
  redis.call('RPUSH', K.expiring, ms(clock + RETENTION) .. ' ' .. id .. ' ' .. ms(now))
end

-- The common end of every terminal transition: the status and times, the retention
-- countdown, the counters and index, and the announcement to waiters.
local function settle(key, id, queue, status, now, clock)
  redis.call('HSET', key, 'status', status, 'completed_at', ms(now), 'last_updated_at', ms(now))
  redis.call('HDEL', key, 'run_at')
  retain(key, id, now, clock)
  count(queue, status, 1)
  index_add(status, now, id)
  announce(key, id)
end

-- The one hook of a job's status change: every transition of _lifecycle.lua calls
-- status_changed(key, from, to) (from nil for a new job) in its script, after the change
-- (unclaim adds a fourth argument, true: the claim it undoes never started).
-- _batch.lua, in the scripts that include it, sets it to count the change in the job's
-- batch; elsewhere it does nothing.
local status_changed = function() end
