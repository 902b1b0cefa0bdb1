-- batch_add: create a batch with its jobs, or append jobs to a running one, all or
-- nothing: every id is checked (unused, not twice, not a continuation's) and the room
-- under the limit of waiting jobs before anything is written. The jobs are stored as
-- enqueue stores them (Queued, or Scheduled when delayed, behind their partition key),
-- each counted in the batch by status_changed (_batch.lua).
--
-- ARGV[1]  'create' or 'append'    ARGV[2]  batch id    ARGV[3]  the call's nonce
-- ARGV[4]  how many chunks batch_stage.lua kept for this call (0: none); their jobs come
--          first, in chunk order, then those of this call
-- ARGV[5]  the most waiting (Queued or Scheduled) jobs allowed, all queues (-1: no limit)
-- ARGV[6]  tenant ('' for none)    ARGV[7]  continue_when    (create only)
-- ARGV[8]  n, how many values the continuations' tuples take (0 for append)
-- ARGV[9], ... ARGV[8 + n]  the continuations' tuples; then the jobs' tuples
--
-- Returns: {code, the batch's hash as {field, value, ...} (when it exists)}: code 'ok';
-- 'again' when this very call ran already (its reply was lost: nothing is stored twice);
-- 'none' (append to no such batch), 'closed' (append to a batch not Running), 'dup' (a
-- taken or repeated id, or create of a batch id taken), 'full' (no room), 'lost' (a
-- staged chunk expired): nothing stored. Or {'late', clock}, nothing stored (its staged
-- chunks kept), when carried out after its caller gave up (too_late in _lib.lua).

local create, batch_id, nonce = ARGV[1] == 'create', ARGV[2], ARGV[3]
local bkey = batch_key(batch_id)
local staged = bkey .. ':staged:' .. ARGV[3]
local chunks, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local n = tonumber(ARGV[8])
local conts = {}
for i = 9, 8 + n do
  conts[#conts + 1] = ARGV[i]
end
local function reply(code)
  return {code, redis.call('HGETALL', bkey)}
end

local status = redis.call('HGET', bkey, 'status')
-- An append's nonce is kept a minute ({p}:steered:<nonce>), not in the batch's hash alone:
-- another append landing between a call and its resend would have replaced it there.
local memo = K.steered .. nonce
local again
if create then
  again = redis.call('HGET', bkey, 'nonce') == nonce
else
  again = redis.call('EXISTS', memo) == 1 or redis.call('HGET', bkey, 'appended') == nonce
end
if status and again then
  redis.call('DEL', staged)
  return reply('again')
end

local jobs = {}
for c = 1, chunks do
  local chunk = redis.call('HGET', staged, tostring(c))
  if not chunk then
    redis.call('DEL', staged)
    return {'lost', {}}
  end
  for _, value in ipairs(cjson.decode(chunk)) do
    jobs[#jobs + 1] = value
  end
end
for i = 9 + n, #ARGV do
  jobs[#jobs + 1] = ARGV[i]
end
-- The staged chunks are read: deleted on every way out, but after the clock's write when
-- jobs are stored, so that a Redis over maxmemory refuses the batch (clock_ms).
local function refuse(code)
  redis.call('DEL', staged)
  return reply(code)
end
if create and status then
  return refuse('dup')
elseif not create and not status then
  return refuse('none')
elseif not create and status ~= 'Running' then
  return refuse('closed')
end

-- Every id unused: not stored, not twice here, not a continuation's of this batch or of
-- another one not stored yet ({p}:reserved, _batch.lua), not named by a sharded store's
-- pointer to another shard ({p}:at).
local seen = {}
if not create then
  for id in string.gmatch(redis.call('HGET', bkey, 'conts') or '', '%S+') do
    seen[id] = true
  end
end
for _, t in ipairs({jobs, conts}) do
  for i = 1, #t, BATCH.fields do
    local id = t[i]
    if seen[id] or redis.call('EXISTS', job_key(id)) == 1
        or redis.call('HEXISTS', BATCH.reserved, id) == 1
        or BATCH.elsewhere(id) then
      return refuse('dup')
    end
    seen[id] = true
  end
end
local count = #jobs / BATCH.fields
if limit >= 0 and waiting_count() + count > limit then
  return refuse('full')
end

local clock = clock_ms()  -- this script's first write from here on
if too_late() then
  -- Its caller gave up on it: nothing stored (_fence.py). The staged chunks stay for a
  -- resend (a refusal that reached its caller in time), else expire or are dropped.
  return {'late', clock}
end
redis.call('DEL', staged)
local now = now_ms()
if create then
  local fields = {'status', 'Running', 'created_at', ms(now), 'when', ARGV[7], 'nonce', nonce,
    'unfinished', 0}
  local ids = {}
  for i = 1, #conts, BATCH.fields do
    ids[#ids + 1] = conts[i]
  end
  if #ids > 0 then
    push(fields, 'conts', table.concat(ids, ' '))
    table.insert(conts, 1, BATCH.fields)
    push(fields, 'pending', cjson.encode(conts))
    for _, id in ipairs(ids) do  -- no submission takes them meanwhile (enqueue_many.lua)
      redis.call('HSET', BATCH.reserved, id, batch_id)
    end
  end
  local entry = index_entry(now, batch_id)
  redis.call('ZADD', BATCH.index, 0, entry)
  BATCH.kept = true
  if ARGV[6] ~= '' then
    push(fields, 'tenant', ARGV[6])
    redis.call('ZADD', BATCH.listing(ARGV[6]), 0, entry)
  end
  redis.call('HSET', bkey, unpack(fields))
else
  redis.call('HSET', bkey, 'appended', nonce)
  redis.call('SET', memo, '1', 'PX', 60000)
end
local ids = {}
for i = 1, #jobs, BATCH.fields do
  ids[#ids + 1] = jobs[i]
  BATCH.store(jobs, i, batch_id, now, clock, false, false)
end
write_all('RPUSH', bkey .. ':jobs', ids)
flush_pending()
return reply('ok')
