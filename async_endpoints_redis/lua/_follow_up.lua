-- Follow-ups and webhook deliveries (included after _batch.lua, whose status_changed it
-- chains): a job's follow-up is stored in the script that makes the job terminal, and a
-- delivery job's transitions are kept in its target's webhook field, in the script of
-- each transition.
--
-- A job stored with a follow-up keeps it in its hash as field follow (its job tuple as
-- JSON, see _batch.lua) and has webhook = '<status> <attempts>' ('Pending 0' at first). A
-- delivery job has field for, its target's id. HOOKED (_lifecycle.lua) counts the
-- unfinished jobs with either field.
--
-- The hook, after the batch's: on a claim (to InProgress, hand-overs included), an end
-- (to a terminal status, from any route: complete, dead, cancel, recovery, a batch's
-- cancel, a continuation stored Canceled), a requeue, and a change of whether the job
-- waits (a new job, a retry, a recovery, an unclaim), and only while HOOKED is not 0
-- (a requeue always looks), it looks at the job's follow and for (as the transition read
-- them already, see hook_fields in _bookkeeping.lua; else it reads them):
--   claim: the target's attempts + 1 (a hand-over that is never started, undone by
--     unclaim, takes it back: attempts count the attempts that started);
--   end: the target's status becomes Delivered (Completed) or Failed (a target held past
--     its retention for this delivery, field held, see purge, is deleted instead); the
--     follow-up is taken out of the hash (HDEL) and stored as enqueue_many stores a job
--     (Queued, or Scheduled when delayed; no waiting limit), unless its id is taken
--     (skipped, and the job's webhook becomes 'Failed 0': nothing will deliver it);
--   requeue of a delivery job: counted in HOOKED again (a requeued job has no follow-up
--     any more, so it never stores one twice);
--   a delivery job starting or stopping to wait (Queued or Scheduled): counted in
--     DELIVERIES_WAITING (_bookkeeping.lua), which waiting_count leaves out, so that
--     deliveries never make max_waiting refuse a submission.
-- A target whose hash is gone is left alone (nothing is created).

local FOLLOW = {batch_changed = status_changed}

-- The target's webhook after a claim (claimed: 1, or -1 for an unclaim) or the end (in
-- status to) of its delivery job; a target that is gone (or not a hash) is left alone.
function FOLLOW.update(target, claimed, to)
  local key = job_key(target)
  local kept = redis.pcall('HMGET', key, 'webhook', 'held')
  if type(kept) ~= 'table' then
    return  -- not a hash
  end
  local state = kept[1]
  if not state then
    if redis.call('EXISTS', key) == 0 then
      return  -- gone
    end
    state = 'Pending 0'
  end
  if kept[2] and not claimed then
    redis.call('DEL', key)  -- held past its retention until this end (see purge)
    return
  end
  local status, attempts = string.match(state, '^(%a+) (%d+)$')
  attempts = tonumber(attempts) or 0
  if claimed then
    attempts = math.max(0, attempts + claimed)
  else
    status = to == 'Completed' and 'Delivered' or 'Failed'
  end
  redis.call('HSET', key, 'webhook', (status or 'Pending') .. ' ' .. attempts)
end

local WAITS = {Queued = 1, Scheduled = 1}

status_changed = function(key, from, to, unclaimed)
  FOLLOW.batch_changed(key, from, to)
  local claimed, ended = to == 'InProgress' and 1 or (unclaimed and -1), TERMINAL[to]
  local requeued = from ~= nil and TERMINAL[from] and not ended
  local waits = (WAITS[to] or 0) - (WAITS[from or ''] or 0)
  if not (claimed or ended or requeued or waits ~= 0)
      or (not requeued and HOOKED.count() == 0) then
    return
  end
  local f = hook_fields[key]  -- read by this transition already (_bookkeeping.lua)
  if f then
    hook_fields[key] = nil
    f = {f[1] or nil, f[2] or nil}
  else
    f = redis.pcall('HMGET', key, 'follow', 'for')
  end
  if type(f) ~= 'table' or not (f[1] or f[2]) then
    return
  end
  if f[2] and waits ~= 0 then
    count('', 'Deliveries', waits)  -- DELIVERIES_WAITING (_bookkeeping.lua)
  end
  if requeued then
    HOOKED.add(1)
    return
  end
  if f[2] and (claimed or ended) then
    FOLLOW.update(f[2], claimed, to)
  end
  if ended then
    HOOKED.add(-1)
    if f[1] then
      redis.call('HDEL', key, 'follow')
      local t = cjson.decode(f[1])
      if redis.call('EXISTS', job_key(t[1])) == 0 then
        BATCH.store(t, 1, nil, now_ms(), clock_ms(), false, false)
      else
        redis.call('HSET', key, 'webhook', 'Failed 0')  -- nothing will deliver it
      end
    end
  end
end
