-- The job's state machine (included after _ready.lua): every transition of
-- async_endpoints/_lifecycle.py under the same name, and nothing else changes a job's
-- status. Each transition keeps, in the same script, everything derived from the status:
--
--   the ready queues (_ready.lua), the scheduled ZSET (due times on the elapsed clock),
--   the active ZSET (lease deadlines), the running index, the listing indexes
--   (_index.lua: 'created', 'Scheduled' by run_at, and one per terminal status by
--   completed_at), the per-queue counters and the retention bookkeeping.
--
-- Counters: {p}:counts is a HASH of "<queue>:<status>" -> how many jobs of that queue have
-- that status, for Scheduled, InProgress and the terminal statuses (terminal jobs while
-- retained); Queued jobs are the length of their queue's LIST. A job's hash leaves its
-- queue out while it is the default one.
--
-- Running index: {p}:running is one ZSET (scores 0) of index entries
-- "<started_at>:<id>" (see _index.lua) of the InProgress jobs, in started_at order.

local STEP_ALLOWANCE_MS = 3600000

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

-- One command per at most 500 values of `values`: command(key, ...values).
local function write_all(command, key, values)
  for first = 1, #values, 500 do
    redis.call(command, key, unpack(values, first, math.min(first + 499, #values)))
  end
end

local function flush_pending()
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
-- longer matches). Its key also expires, by the Redis server's wall clock, an hour later:
-- a backstop for a prefix no worker pool looks after any more, which a step of that clock
-- cannot bring forward past the retention unless the step exceeds the hour.
local function retain(key, id, now, clock)
  redis.call('PEXPIRE', key, RETENTION + STEP_ALLOWANCE_MS)
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

-- enqueue: a new job, Queued at the tail of its queue. fields: the hash as a flat list.
local function enqueue(key, id, fields, queue, now)
  redis.call('HSET', key, unpack(fields))
  ready_push(queue, id)
  index_add('created', now, id)
end

-- schedule: a new job, Scheduled for delay ms (fields say so: status and run_at).
local function schedule(key, id, fields, queue, now, clock, delay)
  redis.call('HSET', key, unpack(fields))
  enter_scheduled(key, id, queue, now, clock, delay)
  index_add('created', now, id)
end

-- enqueue and claim in one step: a new job handed straight to an idle worker (fields
-- hold its InProgress status, token and started_at).
local function enqueue_claimed(key, id, fields, queue, now, deadline)
  redis.call('HSET', key, unpack(fields))
  redis.call('ZADD', K.active, deadline, id)
  enter_running(id, queue, now)
  index_add('created', now, id)
end

-- promote: a due Scheduled job becomes Queued in its own queue (no update of its own).
local function promote(key, id)
  local queue = queue_of(key)
  leave_scheduled(key, id, queue)
  redis.call('HSET', key, 'status', 'Queued')
  redis.call('HDEL', key, 'run_at')
  ready_push(queue, id)
end

-- claim: a Queued job (already popped from its queue) taken by a worker. started: its
-- started_at when an earlier attempt set it (nil: this one does); run_at: whether the
-- hash still holds one (left by the older layout's promotion).
local function claim(key, id, queue, token, deadline, now, started, run_at)
  local stamp = ms(now)
  if started then
    redis.call('HSET', key, 'status', 'InProgress', 'token', token, 'last_updated_at', stamp)
  else
    redis.call('HSET', key, 'status', 'InProgress', 'token', token, 'last_updated_at', stamp,
      'started_at', stamp)
    started = stamp
  end
  if run_at then
    redis.call('HDEL', key, 'run_at')
  end
  push(pending.active_add, deadline, id)
  enter_running(id, queue, started)
end

-- The undoing of a claim that never started (a job handed to an idle worker that did not
-- take it): Queued again at the head of its queue, no attempt counted.
local function unclaim(key, id, now)
  local queue = queue_of(key)
  leave_running(key, id, queue)
  redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
  redis.call('HDEL', key, 'started_at')
  ready_push(queue, id, true)
end

-- complete: a running job succeeded. kept: what stays of its request ('' for nothing);
-- queue and started: the job's (read by the caller with its token). leave_running and
-- settle, with their writes folded into one HSET and one HDEL.
local function complete(key, id, result, kept, now, clock, queue, started)
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
  redis.call('PEXPIRE', key, RETENTION + STEP_ALLOWANCE_MS)
  push(pending.expiring, ms(clock + RETENTION) .. ' ' .. id .. ' ' .. stamp)
  count(queue, 'Completed', 1)
  index_add('Completed', now, id)
  announce(key, id)
end

-- retry: a failed attempt with retries left: one more attempt counted, Queued at the tail
-- of its queue when delay <= 0, else Scheduled for delay ms (due at clock + delay on the
-- elapsed-time clock, shown as run_at = now + delay).
local function retry(key, id, now, clock, delay)
  local queue = queue_of(key)
  leave_running(key, id, queue)
  redis.call('HINCRBY', key, 'retry_count', 1)
  if delay <= 0 then
    redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
    redis.call('HDEL', key, 'run_at')
    ready_push(queue, id)
  else
    redis.call('HSET', key, 'status', 'Scheduled', 'run_at', ms(now + delay),
      'last_updated_at', ms(now))
    enter_scheduled(key, id, queue, now, clock, delay)
  end
end

-- dead: a failed attempt with no retry: Failed for good.
local function dead(key, id, now, clock)
  local queue = queue_of(key)
  leave_running(key, id, queue)
  settle(key, id, queue, 'Failed', now, clock)
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
-- message overtakes the claim's own reply); a terminal one is left as it is. Returns the
-- status the job had, nil when there is none.
local function cancel(key, id, now, clock)
  local status = status_of(key)
  if not status or TERMINAL[status] then
    return status
  end
  local queue = queue_of(key)
  if status == 'Queued' then
    ready_remove(queue, id)
  elseif status == 'Scheduled' then
    leave_scheduled(key, id, queue)
  elseif status == 'InProgress' then
    local token = redis.pcall('HGET', key, 'token')
    leave_running(key, id, queue)
    redis.call('PUBLISH', K.cancel, id .. ' ' .. (type(token) == 'string' and token or ''))
  end
  settle(key, id, queue, 'Canceled', now, clock)
  return status
end

-- requeue: a Failed or Canceled job becomes Queued at the tail of its queue, with
-- retry_count 0 and its error kept; it leaves the retention (its key no longer expires;
-- its expiring entry no longer matches). Returns the status it had (unchanged unless
-- Failed or Canceled), nil when there is none.
local function requeue(key, id, now)
  local status = status_of(key)
  if status ~= 'Failed' and status ~= 'Canceled' then
    return status
  end
  local queue = queue_of(key)
  local completed = redis.call('HGET', key, 'completed_at')
  count(queue, status, -1)
  index_remove(status, completed, id)
  redis.call('PERSIST', key)
  redis.call('HSET', key, 'status', 'Queued', 'last_updated_at', ms(now))
  redis.call('HDEL', key, 'retry_count', 'completed_at', 'run_at')
  ready_push(queue, id)
  return status
end

-- Deletes up to limit terminal jobs whose retention has passed (see retain), with their
-- counts and index entries; the list is in settlement order, so this stops at the first
-- one still due later.
local function purge(clock, limit)
  for _ = 1, limit do
    local entry = redis.call('LINDEX', K.expiring, 0)
    if not entry then
      return
    end
    local due, id, version = string.match(entry, '^(%d+) (%S+) ?(%d*)$')
    if due and tonumber(due) > clock then
      return
    end
    redis.call('LPOP', K.expiring)
    if id then
      local key = job_key(id)
      local status = status_of(key)
      local fields = redis.call('HMGET', key, 'completed_at', 'created_at')
      if TERMINAL[status] and (version == '' or version == fields[1]) then
        if version ~= '' then
          count(queue_of(key), status, -1)
          index_remove(status, fields[1], id)
          index_remove('created', fields[2], id)
        end
        redis.call('DEL', key)
      end
    end
  end
end
