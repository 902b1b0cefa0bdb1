-- The ready queues (included after _index.lua): the only code that touches them. Each
-- queue is a LIST of the ids of its Queued jobs, oldest at the head ({p}:queue:<name>);
-- {p}:queues is a SET of every queue name that ever held a job (for counts over all
-- queues); {p}:paused is the SET of paused queue names. Priorities, pause and (later)
-- partitions change this file only.

local DEFAULT_QUEUE = 'default'

local function ready_key(queue)
  return P .. 'queue:' .. queue
end

-- The queue a job belongs to: its hash's queue field, absent for the default queue.
local function queue_of(key)
  return field_of(key, 'queue') or DEFAULT_QUEUE
end

-- Appends a job to its queue (its head when front is true, for a job that was there
-- before).
local function ready_push(queue, id, front)
  local length = redis.call(front and 'LPUSH' or 'RPUSH', ready_key(queue), id)
  if length == 1 then
    redis.call('SADD', K.queues, queue)
  end
end

-- Takes a Queued job's id out of its queue: O(its position in the list).
local function ready_remove(queue, id)
  redis.call('LREM', ready_key(queue), 1, id)
end

local function ready_count(queue)
  return redis.call('LLEN', ready_key(queue))
end

-- How many jobs are Queued in every queue together.
local function ready_count_all()
  local total = 0
  for _, queue in ipairs(redis.call('SMEMBERS', K.queues)) do
    total = total + ready_count(queue)
  end
  return total
end

-- The paused queues, as a set {name = true}.
local function paused_set()
  local paused = {}
  for _, queue in ipairs(redis.call('SMEMBERS', K.paused)) do
    paused[queue] = true
  end
  return paused
end

-- The queues of `queues` (in their order) that are not paused.
local function open_queues(queues)
  local paused = paused_set()
  local open = {}
  for _, queue in ipairs(queues) do
    if not paused[queue] then
      open[#open + 1] = queue
    end
  end
  return open
end

-- Pops the next id from the first of `queues` (not paused: see open_queues) that has
-- one, in strict priority order; returns the id and its queue, or nil. Queues found empty
-- are taken off the front of `queues`, so a batch of pops skips them.
local function ready_pop(queues)
  while #queues > 0 do
    local id = redis.call('LPOP', ready_key(queues[1]))
    if id then
      return id, queues[1]
    end
    table.remove(queues, 1)
  end
  return nil
end

-- True when any of `queues` holds a Queued job.
local function ready_any(queues)
  for _, queue in ipairs(queues) do
    if ready_count(queue) > 0 then
      return true
    end
  end
  return false
end

-- The queue names a caller sent as one ARGV value: JSON array text (an offer of the
-- older layout has none: the default queue).
local function queue_list(text)
  local ok, queues = pcall(cjson.decode, text)
  if not ok or type(queues) ~= 'table' then
    return {DEFAULT_QUEUE}
  end
  return queues
end

-- Moves the ids of the older one-queue layout's ready LIST ({p}:queue) into the default
-- queue, ahead of what it holds (they are older), keeping their order: a RENAME when the
-- default queue is empty, else up to `limit` ids per call. Returns how many moved.
local function migrate_legacy_queue(limit)
  if redis.call('TYPE', K.legacy_queue).ok ~= 'list' then
    return 0
  end
  local default = ready_key(DEFAULT_QUEUE)
  redis.call('SADD', K.queues, DEFAULT_QUEUE)
  if redis.call('EXISTS', default) == 0 then
    local moved = redis.call('LLEN', K.legacy_queue)
    redis.call('RENAME', K.legacy_queue, default)
    return moved
  end
  local moved = 0
  while moved < limit and redis.call('RPOPLPUSH', K.legacy_queue, default) do
    moved = moved + 1
  end
  return moved
end
