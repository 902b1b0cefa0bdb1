-- Bringing stores of older layouts to this one (included after _lifecycle.lua, by
-- migrate.lua and recover.lua only): the ready LIST of the one-queue layout, and the Queued
-- jobs of layout 2, which had no Queued counters or indexes (see migrate.lua).

-- Moves the ids of the older one-queue layout's ready LIST ({p}:queue) into the default
-- queue, ahead of what it holds (they are older), keeping their order: a RENAME when the
-- default queue is empty, else up to `limit` ids per call. Returns how many moved and,
-- unless they moved by RENAME, their ids.
local function migrate_legacy_queue(limit)
  if redis.call('TYPE', K.legacy_queue).ok ~= 'list' then
    return 0, {}
  end
  local default = ready_key(DEFAULT_QUEUE)
  redis.call('SADD', K.queues, DEFAULT_QUEUE)
  if redis.call('EXISTS', default) == 0 then
    local moved = redis.call('LLEN', K.legacy_queue)
    redis.call('RENAME', K.legacy_queue, default)
    if has_turns(DEFAULT_QUEUE) then
      redis.call('RPUSH', turns_key(DEFAULT_QUEUE), '')
    end
    return moved, nil
  end
  local ids = {}
  while #ids < limit do
    local id = redis.call('RPOPLPUSH', K.legacy_queue, default)
    if not id then
      break
    end
    ids[#ids + 1] = id
  end
  return #ids, ids
end

-- Moves stray ids of the one-queue layout into the default queue (migrate_legacy_queue
-- in _ready.lua), counted as Queued and indexed (those moved by a RENAME are indexed
-- later, by index_queued_lists). Returns how many moved.
local function adopt_legacy_queue(limit)
  local moved, ids = migrate_legacy_queue(limit)
  if moved > 0 then
    count(DEFAULT_QUEUE, 'Queued', moved)
    if ids then
      for _, id in ipairs(ids) do
        local at = redis.call('HMGET', job_key(id), 'queued_at', 'created_at', 'q')
        index_add_entry(queued_index(DEFAULT_QUEUE), queued_entry(at[1] or at[2], id, at[3] or nil))
      end
    else
      redis.call('HSET', K.migrating, DEFAULT_QUEUE, 0)
    end
  end
  return moved
end

-- Indexes the Queued jobs of queue LISTs written before the Queued indexes existed, up to
-- limit ids per call: {p}:migrating is a HASH of queue -> how many ids of its LIST were
-- indexed, counted from its tail (claims pop at the head, so none is skipped; an id
-- indexed twice is harmless). Returns how many queues are left.
local function index_queued_lists(limit)
  local todo = redis.call('HGETALL', K.migrating)
  for i = 1, #todo, 2 do
    if limit <= 0 then
      break
    end
    local queue, done = todo[i], tonumber(todo[i + 1]) or 0
    local ids = redis.call('LRANGE', ready_key(queue), -done - limit, -done - 1)
    for _, id in ipairs(ids) do
      local fields = redis.pcall('HMGET', job_key(id), 'status', 'created_at', 'queued_at', 'q')
      if type(fields) == 'table' and fields[1] == 'Queued' then  -- at the entry's moment
        index_add_entry(queued_index(queue),
          queued_entry(fields[3] or fields[2], id, fields[4] or nil))
      end
    end
    if #ids < limit then
      redis.call('HDEL', K.migrating, queue)
    else
      redis.call('HSET', K.migrating, queue, done + #ids)
    end
    limit = limit - #ids
  end
  return redis.call('HLEN', K.migrating)
end
