-- list_jobs: one page of jobs, in the order of async_endpoints/_listing.py.
--
-- ARGV[1]  the status ('' for every job)
-- ARGV[2]  the queue filter ('' for none)
-- ARGV[3]  the most jobs on the page
-- ARGV[4]  the most entries looked at (bounds the work a queue or tenant filter may spend)
-- ARGV[5]  the queues, highest priority first, as a JSON array (the order of Queued jobs;
--          other queues that hold jobs follow, by name)
-- ARGV[6]  where the previous page ended: an index entry ('' for the start): "<ms>:<id>",
--          or for Queued jobs a place in the claim order of the queue named by ARGV[7]:
--          "<round> <place> <id>" in its tenants' turns, or a queued_entry (_index.lua) among
--          its jobs waiting behind their partition key
-- ARGV[8]  the tenant filter ('' for none)
-- ARGV[9]  the batch filter: a batch id ('' for none)
--
-- Where the jobs come from:
--   Queued      queue after queue in priority order, each in its claim order: its ready
--               order (_ready.lua) in the tenants' turns, O(tenants + page), then the
--               jobs waiting behind their partition key from its Queued index (by due
--               moment, then id), the ready jobs there passed (at most PASSED_MOST a
--               call), read only when the queue holds such a job
--   InProgress  {p}:running, oldest started_at first: O(log n + page)
--   Scheduled   the 'Scheduled' index (by run_at), soonest first: O(log n + page)
--   terminal    the status's index (by completed_at), newest first: O(log n + page)
--   none        the 'created' index, newest first: O(log n + page)
-- With a queue, tenant or batch filter every entry looked at counts against ARGV[4]: the page
-- may come back short, with a position to go on from.
--
-- Returns: {jobs, position, queue, entries, queues}: jobs as job_text (_lib.lua) values;
-- the position to pass for the next page ('' when this page is the last) and, for
-- Queued, the queue whose order holds it; then each listed job's own position and its
-- queue ('' but for Queued): the position right after that job (a sharded store's
-- cursor resumes a shard there); or {'invalid'} when ARGV[7] names a queue this listing
-- does not visit.

local status, queue_filter = ARGV[1], ARGV[2]
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local after = ARGV[6] ~= '' and ARGV[6] or nil
local tenant_filter = ARGV[8] or ''
local batch_filter = ARGV[9] or ''
local jobs, entries, entry_queues = {}, {}, {}
local scanning = '' -- the queue whose Queued index is being read
local looked = 0
local last = nil
local last_queue = '' -- the queue whose claim order holds `last` (Queued only)
local more = false

-- Whether the job is of the queue, tenant and batch asked for (any when none is).
local function matches(key)
  if queue_filter ~= '' and queue_of(key) ~= queue_filter then
    return false
  end
  if batch_filter ~= '' and field_of(key, 'batch') ~= batch_filter then
    return false
  end
  return tenant_filter == '' or field_of(key, 'tenant') == tenant_filter
end

-- Whether a Queued index entry is the job's current one (at its queued_at, else its
-- created_at, and its sequence number): an entry left behind (written by an earlier
-- version, which indexed every Queued job at its created_at, during a rolling upgrade)
-- is skipped, so no job is listed twice. An entry without a sequence number is current
-- when its moment is: a version before the numbers queued the job (its q, if any, is
-- one of an earlier entering that such a version's claim left behind).
local function current_queued(entry, id)
  local at = redis.pcall('HMGET', job_key(id), 'queued_at', 'created_at', 'q')
  if type(at) ~= 'table' then
    return false
  end
  local moment = at[1] or at[2]
  if #entry == 43 then
    return queued_entry(moment, id) == entry
  end
  return at[3] ~= false and queued_entry(moment, id, at[3]) == entry
end

-- An entry whose job is gone (its key expired by its Redis TTL, the backstop, before a
-- recovery pass deleted it with its entries: see _bookkeeping.lua), and a Queued index
-- entry that is no longer its job's (not Queued, or queued again since under another
-- entry: left behind by a process of an older version during a rolling upgrade, which
-- wrote or removed entries of another form), is taken out as the listing meets it,
-- without counting against the page's budget, up to STALE_CLEARED a call: such entries
-- never fill a page with nothing. scanning_index names the index being read (nil: the
-- running ZSET).
local STALE_CLEARED = 1000
local cleared = 0
local scanning_index = nil

local function clear_entry(entry)
  cleared = cleared + 1
  if scanning_index then
    index_remove_entry(scanning_index, entry)
  else
    redis.call('ZREM', K.running, entry)
  end
end

-- True (and `more` set) once the page is full or its budget spent.
local function page_ended()
  if #jobs >= limit or looked >= budget then
    more = true
    return true
  end
  return false
end

-- Counts an entry looked at (the page's position moves past it) and lists its job when
-- `listed`; true.
local function looked_at(entry, key, id, listed)
  looked = looked + 1
  last, last_queue = entry, scanning
  if listed then
    jobs[#jobs + 1] = job_text(key, id)
    entries[#jobs] = entry
    entry_queues[#jobs] = scanning
  end
  return true
end

-- Looks at one entry's job: listed when it still exists, has the status asked for (any
-- when none is) and matches the filters. False once the page is full or the budget is
-- spent (the entry is then left for the next page).
local function take(entry, id, wanted)
  if page_ended() then
    return false
  end
  local key = job_key(id)
  local current = status_of(key)
  local fresh = wanted ~= 'Queued' or (current == 'Queued' and current_queued(entry, id))
  if cleared < STALE_CLEARED and (not fresh or (not current
      and redis.call('EXISTS', key) == 0)) then
    clear_entry(entry)
    return true
  end
  return looked_at(entry, key, id,
    fresh and current and (wanted == nil or current == wanted) and matches(key))
end

-- Queued jobs are listed queue by queue in the order claims take them: first the jobs
-- in the ready order, the tenants taking turns (_ready.lua): the first job of every
-- tenant in the order of the turns, then the second job of those that have two, and so
-- on (position "<round> <place in the turns> <id>"); then the jobs waiting behind their
-- partition key, by when each was queued (position: their Queued index entry).

-- One queue's tenants in the order of their turns (a queue without turns: the jobs without
-- a tenant alone), each {place, list, count, first, tenant}: its place in the turns, the
-- LIST of its ready jobs (all of them, or those after its first when `first`, the id its
-- turn carries), and how many ready jobs it has.
local function turn_groups(queue)
  local groups = {}
  if not has_turns(queue) then
    local count = redis.call('LLEN', ready_key(queue))
    if count > 0 then
      groups[1] = {place = 0, list = ready_key(queue), count = count}
    end
    return groups
  end
  local counts = {}
  local flat = redis.call('HGETALL', tenants_key(queue))
  for i = 1, #flat, 2 do
    counts[flat[i]] = tonumber(flat[i + 1])
  end
  for place, entry in ipairs(redis.call('LRANGE', turns_key(queue), 0, -1)) do
    if entry == '' then
      groups[#groups + 1] = {place = place - 1, list = ready_key(queue),
        count = redis.call('LLEN', ready_key(queue))}
    else
      local id, tenant = string.match(entry, '^(%S+) (.*)$')
      if id then
        groups[#groups + 1] = {place = place - 1, list = tenant_key(queue, tenant), first = id,
          tenant = tenant, count = counts[tenant] or 1}
      end
    end
  end
  return groups
end

-- The id of a group's ready job at `round` (0: its first), read from its LIST a chunk
-- at a time; nil when there is none.
local CHUNK = math.max(16, math.min(limit + 1, 1000))

local function job_at(group, round)
  if group.first then
    if round == 0 then
      return group.first
    end
    round = round - 1
  end
  local from = group.from
  if not from or round < from or round >= from + #group.chunk then
    group.from, group.chunk = round, redis.call('LRANGE', group.list, round, round + CHUNK - 1)
    from = round
  end
  return group.chunk[round - from + 1]
end

-- Looks at a ready job (its place in the order: `entry`), as take does an index's.
local function take_ready(id, entry)
  if page_ended() then
    return false
  end
  local key = job_key(id)
  return looked_at(entry, key, id, status_of(key) == 'Queued' and matches(key))
end

-- The round and place in the turns (`groups`, of turn_groups) of `queue` of the job `id`
-- (which was at round `was`), or nil when it is not ready there now: O(1) LIST steps
-- when it is still there, else O(its round).
local function now_at(groups, queue, id, was)
  local key = job_key(id)
  local at = redis.call('HMGET', key, 'status', 'behind', 'tenant', 'queue')
  if at[1] ~= 'Queued' or at[2] == '1' or (at[4] or DEFAULT_QUEUE) ~= queue then
    return nil
  end
  local tenant = at[3] or nil
  for _, group in ipairs(groups) do
    if group.tenant == tenant then
      if group.first == id then
        return 0, group.place
      end
      local shift = group.first and 1 or 0
      if was >= shift and redis.call('LINDEX', group.list, was - shift) == id then
        return was, group.place
      end
      local index = redis.call('LPOS', group.list, id)
      if not index then
        return nil
      end
      return index + (group.first and 1 or 0), group.place
    end
  end
  return nil
end

-- Lists the ready jobs of `queue` in claim order (the tenant asked for alone), from the
-- start, or from after the job `id` where it is now while it is still ready (claims
-- between two pages move the jobs up), else after round `first_round`, place
-- `last_place`; false when the page ended there.
local function walk_turns(queue, first_round, last_place, id)
  local groups = turn_groups(queue)
  if id then
    local round, place = now_at(groups, queue, id, first_round)
    if round then
      first_round, last_place = round, place
    end
  end
  local left = {}
  for _, group in ipairs(groups) do
    if group.count > first_round and (tenant_filter == '' or group.tenant == tenant_filter) then
      left[#left + 1] = group
    end
  end
  local round = first_round
  while #left > 0 do
    for _, group in ipairs(left) do
      if round > first_round or group.place > last_place then
        local id = job_at(group, round)
        if id and not take_ready(id, round .. ' ' .. group.place .. ' ' .. id) then
          return false
        end
      end
    end
    round = round + 1
    local kept = {}
    for _, group in ipairs(left) do
      if group.count > round then
        kept[#kept + 1] = group
      end
    end
    left = kept
  end
  return true
end

-- Whether some Queued job of `queue` waits behind its partition key: it counts more Queued
-- jobs than its ready order holds.
local function holds_behind(queue)
  local queued = tonumber(redis.call('HGET', K.counts, queue .. ':Queued')) or 0
  local ready = redis.call('LLEN', ready_key(queue))
  for _, count in ipairs(redis.call('HVALS', tenants_key(queue))) do
    ready = ready + tonumber(count)
  end
  return queued > ready
end

-- The ready jobs the walk of the jobs behind their key may pass in one call (they were
-- listed in the turns): past them the page ends, short, with a position to go on from.
local PASSED_MOST = 10000
local passed = 0

-- Lists the Queued jobs of `queue` waiting behind their key, from after the index entry
-- `after` (nil: the first); false when the page ended there.
local function walk_behind(queue, after)
  if not holds_behind(queue) then
    return true
  end
  scanning_index = queued_index(queue)
  local going = true
  index_scan(scanning_index, after, false, function(entry)
    local id = queued_entry_id(entry)
    local at = redis.call('HMGET', job_key(id), 'status', 'behind')
    if at[1] == 'Queued' and at[2] ~= '1' then  -- ready: listed in the turns
      if passed >= PASSED_MOST then
        more, going = true, false
        return false
      end
      passed = passed + 1
      if #jobs < limit then
        last, last_queue = entry, scanning
      end
      return true
    end
    going = take(entry, id, 'Queued')
    return going
  end)
  return going
end

if status == 'Queued' then
  local order = {}
  if queue_filter ~= '' then
    order = {queue_filter}
  else
    local seen = {}
    for _, queue in ipairs(queue_list(ARGV[5])) do
      if not seen[queue] then
        order[#order + 1] = queue
        seen[queue] = true
      end
    end
    local others = {}
    for _, queue in ipairs(redis.call('SMEMBERS', K.queues)) do
      if not seen[queue] then
        others[#others + 1] = queue
      end
    end
    table.sort(others)
    for _, queue in ipairs(others) do
      order[#order + 1] = queue
    end
  end
  local start = 1
  if after then
    start = nil
    for i, queue in ipairs(order) do
      if queue == ARGV[7] then
        start = i
      end
    end
    if not start then
      return {'invalid'}
    end
  end
  -- The position: in the turns "<round> <place> <id>", else an entry of the Queued index.
  local first_round, last_place, last_id, behind_after = 0, -1, nil, nil
  if after then
    local round, place, id = string.match(after, '^(%d+) (%d+) (%S+)$')
    if round then
      first_round, last_place, last_id = tonumber(round), tonumber(place), id
    else
      behind_after = after
    end
  end
  for i = start, #order do
    local queue = order[i]
    scanning = queue
    local resumed = i == start and after
    if not (resumed and behind_after) then
      if not walk_turns(queue, resumed and first_round or 0, resumed and last_place or -1,
          resumed and last_id or nil) then
        break
      end
    end
    if not walk_behind(queue, resumed and behind_after or nil) then
      break
    end
  end
  index_flush()  -- the stale entries met
  return {jobs, more and last or '', more and last_queue or '', entries, entry_queues}
end
if status == 'InProgress' then
  local from = after and ('(' .. after) or '-'
  while not more do
    local entries = redis.call('ZRANGEBYLEX', K.running, from, '+', 'LIMIT', 0, limit + 1)
    if #entries == 0 then
      break
    end
    for _, entry in ipairs(entries) do
      if not take(entry, entry_id(entry), 'InProgress') then
        break
      end
    end
    from = '(' .. entries[#entries]
  end
elseif status == '' then
  scanning_index = 'created'
  index_scan('created', after, true, function(entry)
    return take(entry, entry_id(entry), nil)
  end)
else
  scanning_index = status
  index_scan(status, after, status ~= 'Scheduled', function(entry)
    return take(entry, entry_id(entry), status)
  end)
end
index_flush()  -- the stale entries met
return {jobs, more and last or '', '', entries, entry_queues}
