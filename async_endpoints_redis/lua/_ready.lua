-- The ready order (included after _index.lua): the only code that touches it. A job is
-- in it while it is Queued and claimable (not waiting behind its partition key: see
-- _lifecycle.lua).
--
-- Per queue:
--
--   {p}:queue:<queue>                 LIST  the ready jobs without a tenant, oldest first
--   {p}:turns:<queue>                 LIST  the turns: per tenant with ready jobs one entry
--                                           "<id> <tenant>", its oldest ready job; '' for
--                                           the jobs without a tenant (when they have any)
--   {p}:tenants:<queue>               HASH  tenant -> how many ready jobs it has
--   {p}:tq:<#queue>:<queue>:<tenant>  LIST  a tenant's other ready jobs, oldest first (the
--                                           queue's length in characters first, so no two
--                                           names collide)
--
-- The turns exist only while some tenant of the queue has a ready job; a queue whose jobs
-- have no tenant is one LIST, pushed and popped as in a queue without tenants. A claim
-- takes the entry at the head of the turns, its job, and moves it to the end carrying the
-- tenant's next job (round robin, one job per tenant per turn); a tenant with no job left
-- leaves the turns and the HASH, and the turns go when no tenant is left. A tenant with
-- one ready job so costs a field of the queue's HASH and no key of its own.
-- {p}:queues is a SET of every queue name that ever held a job; {p}:paused is the SET of
-- paused queue names.

local DEFAULT_QUEUE = 'default'

local function ready_key(queue)
  return P .. 'queue:' .. queue
end

local function tenant_key(queue, tenant)
  return P .. 'tq:' .. #queue .. ':' .. queue .. ':' .. tenant
end

local function turns_key(queue)
  return P .. 'turns:' .. queue
end

local function tenants_key(queue)
  return P .. 'tenants:' .. queue
end

-- The queue a job belongs to: its hash's queue field, absent for the default queue.
local function queue_of(key)
  return field_of(key, 'queue') or DEFAULT_QUEUE
end

-- Whether a queue's turns exist, read once per script per queue (every change of them
-- goes through this file, which keeps the answer current).
local has_turns_known = {}

local function has_turns(queue)
  local known = has_turns_known[queue]
  if known == nil then
    known = redis.call('EXISTS', turns_key(queue)) == 1
    has_turns_known[queue] = known
  end
  return known
end

-- After an entry left the turns: they go once only the jobs without a tenant are left.
local function settle_turns(queue)
  local turns = turns_key(queue)
  local left = redis.call('LRANGE', turns, 0, 1)
  if #left == 1 and left[1] == '' then
    redis.call('DEL', turns)
    left = {}
  end
  if #left == 0 then
    has_turns_known[queue] = false
  end
end

-- The index in the turns of a tenant's entry, or nil: a walk of the turns, O(number of
-- tenants with ready jobs), for the rare callers that know the tenant but not its entry.
local function turn_of(queue, tenant)
  local turns = turns_key(queue)
  local length = redis.call('LLEN', turns)
  for first = 0, length - 1, 1000 do
    for i, entry in ipairs(redis.call('LRANGE', turns, first, first + 999)) do
      local _, named = string.match(entry, '^(%S+) (.*)$')
      if named == tenant then
        return first + i - 1, entry
      end
    end
  end
  return nil
end

-- Appends a job to the ready order of its queue (tenant nil: none), or puts it first
-- (front true: a job handed over and given back, which was first before, so it takes its
-- tenant's place in the turns and the job there goes back to the head of its LIST).
local function ready_push(queue, tenant, id, front)
  local command = front and 'LPUSH' or 'RPUSH'
  if not tenant then
    if redis.call(command, ready_key(queue), id) == 1 then
      redis.call('SADD', K.queues, queue)
      if has_turns(queue) then
        redis.call(command, turns_key(queue), '')
      end
    end
    return
  end
  if redis.call('HINCRBY', tenants_key(queue), tenant, 1) > 1 then
    local at, entry = nil, nil
    if front then
      at, entry = turn_of(queue, tenant)
    end
    if at then
      redis.call('LSET', turns_key(queue), at, id .. ' ' .. tenant)
      redis.call('LPUSH', tenant_key(queue, tenant), string.match(entry, '^(%S+)'))
    else
      redis.call(command, tenant_key(queue, tenant), id)
    end
    return
  end
  redis.call('SADD', K.queues, queue)
  local turns = turns_key(queue)
  if not has_turns(queue) then
    if redis.call('EXISTS', ready_key(queue)) == 1 then
      redis.call('RPUSH', turns, '')
    end
    has_turns_known[queue] = true
  end
  redis.call(command, turns, id .. ' ' .. tenant)
end

-- The tenant's entry in the turns (at index `at`, nil: the one just moved to the end)
-- was taken: it carries the tenant's next job, or leaves with the tenant's last.
local function pass_turn(queue, tenant, at)
  local turns = turns_key(queue)
  local following = redis.call('LPOP', tenant_key(queue, tenant))
  if following then
    redis.call('LSET', turns, at or -1, following .. ' ' .. tenant)
    redis.call('HINCRBY', tenants_key(queue), tenant, -1)
    return
  end
  redis.call('HDEL', tenants_key(queue), tenant)
  if at then
    redis.call('LREM', turns, 1, redis.call('LINDEX', turns, at))
  else
    redis.call('RPOP', turns)
  end
  settle_turns(queue)
end

-- While set (a table), ready_remove only notes the ids of jobs without a tenant to take
-- out of their queue's LIST, per queue, and ready_remove_noted takes them out all at once
-- (batch_cancel.lua): LREM scans its LIST from the head for every id, so cancelling a
-- step of 2000 jobs queued behind a backlog of 100,000 took seconds of Redis (an outside
-- review); one pass from the head up to the last of them takes them all out.
local READY_NOTED = nil

-- A queue's LIST of jobs without a tenant lost its last entry: its turn among the
-- tenants' goes too.
local function ready_emptied(queue)
  if redis.call('EXISTS', ready_key(queue)) == 0 and has_turns(queue) then
    redis.call('LREM', turns_key(queue), 1, '')
    settle_turns(queue)
  end
end

-- Takes a Queued job's id out of the ready order: O(its position in its queue's or its
-- tenant's LIST, or in the turns).
local function ready_remove(queue, tenant, id)
  if not tenant then
    if READY_NOTED then
      local noted = READY_NOTED[queue] or {}
      noted[id] = true
      READY_NOTED[queue] = noted
      return
    end
    if redis.call('LREM', ready_key(queue), 1, id) == 1 then
      ready_emptied(queue)
    end
    return
  end
  if redis.call('LREM', tenant_key(queue, tenant), 1, id) == 1 then
    redis.call('HINCRBY', tenants_key(queue), tenant, -1)
    return
  end
  local at = redis.call('LPOS', turns_key(queue), id .. ' ' .. tenant)
  if at then
    pass_turn(queue, tenant, at)
  end
end

-- Takes out the ids READY_NOTED holds (see there) and stops noting: a few by LREM, more
-- by one pass from the head of the queue's LIST, in chunks, up to the last of them (the
-- part passed is written again without them, in order; the rest is not touched).
local function ready_remove_noted()
  local noted = READY_NOTED or {}
  READY_NOTED = nil
  for queue, ids in pairs(noted) do
    local list, left = ready_key(queue), 0
    for _ in pairs(ids) do
      left = left + 1
    end
    if left <= 16 then
      for id in pairs(ids) do
        redis.call('LREM', list, 1, id)
      end
    else
      local kept, passed = {}, 0
      while left > 0 do
        local part = redis.call('LRANGE', list, passed, passed + 999)
        if #part == 0 then
          break
        end
        for _, id in ipairs(part) do
          if ids[id] then
            ids[id] = nil  -- once: a second entry of the id (none is expected) stays
            left = left - 1
          else
            kept[#kept + 1] = id
          end
        end
        passed = passed + #part
      end
      redis.call('LTRIM', list, passed, -1)
      -- Pushed to the head last first, so the part passed keeps its order.
      for last = #kept, 1, -500 do
        local chunk = {}
        for k = last, math.max(1, last - 499), -1 do
          chunk[#chunk + 1] = kept[k]
        end
        redis.call('LPUSH', list, unpack(chunk))
      end
    end
    ready_emptied(queue)
  end
end

-- Whether the queue holds a ready job.
local function ready_holds(queue)
  return has_turns(queue) or redis.call('EXISTS', ready_key(queue)) == 1
end

-- The next id of a queue with tenants: the entry at the head of the turns gives its job
-- and goes to the end; nil when the queue holds none.
local function pop_turn(queue)
  local turns = turns_key(queue)
  while true do
    local entry = redis.call('LMOVE', turns, turns, 'LEFT', 'RIGHT')
    if not entry then
      has_turns_known[queue] = false
      return nil
    end
    if entry == '' then
      local list = ready_key(queue)
      local id = redis.call('LPOP', list)
      if redis.call('EXISTS', list) == 0 then
        redis.call('RPOP', turns)
        settle_turns(queue)
      end
      if id then
        return id
      end
    else
      local id, tenant = string.match(entry, '^(%S+) (.*)$')
      pass_turn(queue, tenant or '', nil)
      if id then
        return id
      end
    end
  end
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
-- one, in strict priority order (tenants taking turns within a queue); returns the id
-- and its queue, or nil. Queues found empty are taken off the front of `queues`, so a
-- batch of pops skips them.
local function ready_pop(queues)
  while #queues > 0 do
    local queue = queues[1]
    local id
    if has_turns(queue) then
      id = pop_turn(queue)
    else
      id = redis.call('LPOP', ready_key(queue))
    end
    if id then
      return id, queue
    end
    table.remove(queues, 1)
  end
  return nil
end

-- True when any of `queues` holds a ready job.
local function ready_any(queues)
  for _, queue in ipairs(queues) do
    if ready_holds(queue) then
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
