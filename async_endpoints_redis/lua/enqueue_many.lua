-- enqueue_many: store new jobs. A job goes straight to an idle worker that has an open
-- offer (see _offers.lua) for its queue when nothing is queued ahead of it; otherwise it
-- is Queued at the tail of its queue (or Scheduled, when delayed) and workers are woken.
-- One call carries every submission a process made in the same event-loop turn.
--
-- ARGV[1], ARGV[2], ...  14-tuples of job id, job name, max_retries, request JSON (or ''
--          for an empty request), the most waiting jobs allowed (-1: no limit), the queue,
--          the delay in ms (0: Queued now), the partition key and the tenant ('' for none),
--          the idempotency key, fingerprint and time to live in ms ('' for none), and the
--          follow-up (its job tuple as JSON, see _follow_up.lua) and the id of the job
--          whose webhook it delivers ('' for none)
--
-- Idempotency: a job whose key ({p}:idem:<key>, a HASH of the id and fingerprint it was
-- first stored with) is remembered is not stored; its reply is that job's fingerprint, a
-- newline, and the job as job_text (_lib.lua) instead, or "gone <id>" when that job is
-- no longer kept (its retention ended before the key's). A job that is stored records its
-- key with the store's elapsed-time clock reading at which its time to live ends
-- ('until'): a record read past it counts as gone, so a step of the Redis host's wall
-- clock does not end it early. Redis expires the record STEP_ALLOWANCE_MS after that
-- (by its own clock, a backstop); a record of an older version, without 'until', lasts
-- as long as its key.
--
-- A job with a partition key joins the key's lane (see _lifecycle.lua); unless it is
-- first there it waits, Queued or Scheduled, out of the ready order (never handed over).
--
-- Handing over: the job is stored InProgress under a token of the offer ("<base>.<n>",
-- n counting the jobs the offer got, which its given-list records), with the offer's
-- lease, and published to the worker's inbox as "<id>" followed by the job's hash as a
-- JSON array {field, value, ...}, with 'lease_until' (when the lease ends) after it. It
-- is handed over only when its queue is not paused and holds no ready job (of any
-- tenant), the offer serves it and no queue the offer ranks higher holds a ready job
-- (strict priority), it is first in its key's lane (if any), when the worker's
-- subscription to its inbox is live on this node, and only when its request is at most
-- 8 KiB (larger ones are queued: pub/sub is no place for big payloads); an offer whose
-- worker is gone, that expired or that is used up loses its turn. Offers take turns, so
-- a burst spreads over the idle workers.
--
-- Returns: {replies, queued, clock}: per job, in order, its created-at time (ms), -1 when the id
-- exists (that job is left unchanged), -2 when its limit of waiting (Queued or
-- Scheduled, all queues) jobs is reached (nothing stored for it), or the text
-- "<fingerprint>\n<job_text>" (or "<fingerprint>\ngone <id>") of the job its idempotency
-- key names; and how many jobs were
-- made ready (Queued in the ready order) rather than handed over or left waiting; and the
-- elapsed-time clock. Or {'late', clock}, nothing stored, when carried out after its
-- caller gave up (too_late in _lib.lua).

local clock = clock_ms()
if too_late() then
  return {'late', clock}  -- its caller gave up on it: nothing stored (_fence.py)
end
local now = now_ms()
local stamp = ms(now)
local waiting = nil
local queued = 0
local paused = paused_set()
local MAX_OFFERS_LOOKED_AT = 16
local offers_open = true  -- until a look finds no idle worker: none appears in this call
local holds = {}  -- queue -> true once it is known to hold a Queued job

local function holds_jobs(queue)
  if holds[queue] == nil then
    holds[queue] = ready_holds(queue)
  end
  return holds[queue]
end

-- Whether the offer may take a job of `queue`: it serves it, and no queue it ranks
-- higher (that is not paused) holds a job.
local function serves(queues_json, queue)
  for _, served in ipairs(queue_list(queues_json)) do
    if served == queue then
      return true
    end
    if not paused[served] and holds_jobs(served) then
      return false
    end
  end
  return false
end

-- Stores the job InProgress for an open offer and tells its worker; false when no live
-- offer is open for its queue.
local function hand_over(key, id, fields, queue)
  if not offers_open then
    return false
  end
  local inboxes = redis.call('LRANGE', K.idle, 0, MAX_OFFERS_LOOKED_AT - 1)
  offers_open = #inboxes > 0
  for _, inbox in ipairs(inboxes) do
    local offer = redis.call('HGET', K.offers, inbox)
    local base, slots, lease, expires, queues = nil, 0, 0, 0, ''
    if offer then
      base, slots, lease, expires, queues = parse_offer(offer)
    end
    local channel = K.inbox .. inbox
    -- NUMSUB counts the worker's own subscription on this node (pattern subscribers and
    -- other nodes' subscribers do not count), and nothing is published unless stored. A
    -- user not allowed PUBSUB gets no hand-over: its jobs are queued as usual.
    -- Open by the clock as the wall clock says it would be (LEASE_FROM, see _lib.lua):
    -- a submission carried out at the end of a stall carries an early reading, by which
    -- an offer that expired in the stall (its worker may have given it up, and would
    -- start nothing handed to it) still looks open.
    local listening = false
    if base and slots > 0 and expires > LEASE_FROM then
      local count = redis.pcall('PUBSUB', 'NUMSUB', channel)
      listening = type(count) == 'table' and tonumber(count[2]) ~= nil and tonumber(count[2]) > 0
    end
    if not listening then
      -- Used up, expired, gone or unreachable for now: out of turn. Its record stays for
      -- its worker's withdrawal (offer.lua collects those of workers that never return).
      redis.call('LREM', K.idle, 1, inbox)
    elseif serves(queues, queue) then
      local given = K.given .. base
      local token = base .. '.' .. (redis.call('LLEN', given) + 1)
      local handed = {}
      for _, value in ipairs(fields) do
        handed[#handed + 1] = value
      end
      handed[4] = 'InProgress'  -- fields[3] is 'status'
      for _, value in ipairs({'token', token, 'started_at', stamp, 'due_at', stamp}) do
        handed[#handed + 1] = value
      end
      enqueue_claimed(key, id, handed, queue, now, LEASE_FROM + lease)
      redis.call('RPUSH', given, id)
      -- Kept while the offer may still hand jobs over, and then for a lease, so that
      -- token numbers never repeat within an offer.
      redis.call('PEXPIRE', given, expires - clock + lease)
      -- A used-up offer stays in the HASH until its worker withdraws it, which puts
      -- back what it was handed but did not start.
      local rest = base .. ' ' .. (slots - 1) .. ' ' .. lease .. ' ' .. ms(expires)
      redis.call('HSET', K.offers, inbox, rest .. ' ' .. queues)
      redis.call('LREM', K.idle, 1, inbox)
      if slots > 1 then
        redis.call('RPUSH', K.idle, inbox)
      end
      -- The message also tells when the lease ends (elapsed-time clock): a worker that
      -- reads it later than a third of the lease in renews the claim before starting it.
      handed[#handed + 1] = 'lease_until'
      handed[#handed + 1] = ms(LEASE_FROM + lease)
      redis.call('PUBLISH', channel, id .. cjson.encode(handed))
      return true
    end
  end
  return false
end

-- Whether the id is a continuation's of a batch not finished yet (_batch.lua): taken.
local any_reserved = redis.call('EXISTS', BATCH.reserved) == 1
local function reserved(id)
  return any_reserved and redis.call('HEXISTS', BATCH.reserved, id) == 1
end

local replies = {}
local woken = {}
for i = 1, #ARGV, 14 do
  local id = ARGV[i]
  local key = job_key(id)
  local idem = ARGV[i + 9] ~= '' and (P .. 'idem:' .. ARGV[i + 9]) or nil
  local earlier = idem and redis.call('HMGET', idem, 'id', 'fp', 'until')
  if earlier and earlier[3] and tonumber(earlier[3]) and tonumber(earlier[3]) <= clock then
    earlier = nil  -- its time to live has ended on the store's clock
  end
  local limit = tonumber(ARGV[i + 4])
  local queue = ARGV[i + 5]
  local delay = tonumber(ARGV[i + 6]) or 0
  local partition_key = ARGV[i + 7] ~= '' and ARGV[i + 7] or nil
  local tenant = ARGV[i + 8] ~= '' and ARGV[i + 8] or nil
  if limit >= 0 and waiting == nil then
    waiting = waiting_count()
  end
  if earlier and earlier[1] then
    local named = job_key(earlier[1])
    if redis.call('EXISTS', named) == 1 then
      replies[#replies + 1] = (earlier[2] or '') .. '\n' .. job_text(named, earlier[1])
    else
      -- Its retention ended before the key's: answered, never stored a second time.
      replies[#replies + 1] = (earlier[2] or '') .. '\ngone ' .. earlier[1]
    end
  elseif redis.call('EXISTS', key) == 1 or BATCH.elsewhere(id) or reserved(id) then
    replies[#replies + 1] = -1
  elseif limit >= 0 and waiting >= limit then
    replies[#replies + 1] = -2
  else
    local fields = new_job_fields(ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], queue, partition_key,
      tenant, stamp, ARGV[i + 12] ~= '' and ARGV[i + 12] or nil,
      ARGV[i + 13] ~= '' and ARGV[i + 13] or nil)
    local first = lane_join_new(fields, partition_key, id)
    if delay > 0 then
      fields[4] = 'Scheduled'
      fields[#fields + 1] = 'run_at'
      fields[#fields + 1] = ms(now + delay)
      schedule(key, id, fields, queue, now, clock, delay)
      waiting = waiting and waiting + 1
      woken[#woken + 1] = true  -- idle workers learn the new earliest due time
    elseif not first or paused[queue] or holds_jobs(queue) or #ARGV[i + 3] > 8192
        or not hand_over(key, id, fields, queue) then
      enqueue(key, id, fields, queue, now, tenant, first)
      holds[queue] = holds[queue] or first
      queued = queued + (first and 1 or 0)
      waiting = waiting and waiting + 1
    end
    if idem then
      local ttl = tonumber(ARGV[i + 11])
      redis.call('HSET', idem, 'id', id, 'fp', ARGV[i + 10], 'until', ms(clock + ttl))
      redis.call('PEXPIRE', idem, ttl + STEP_ALLOWANCE_MS)
    end
    replies[#replies + 1] = now
  end
end
flush_pending()
if queued > 0 or #woken > 0 then
  wake()
end
return {replies, queued, clock}  -- the clock: the caller's reading keeps up with it
