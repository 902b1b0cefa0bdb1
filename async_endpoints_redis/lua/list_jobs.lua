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
--          "<round> <place> <entry>[ <round> <place>]" in its tenants' turns (see
--          take_ready), or a queued_entry (_index.lua) among
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
local last_turn = nil -- the last job of the turns looked at, while nothing else was since

local function looked_at(entry, key, id, listed)
  looked = looked + 1
  last, last_queue, last_turn = entry, scanning, nil
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
-- on (position: see take_ready); then the jobs waiting behind their
-- partition key, by when each was queued (position: their Queued index entry).

-- A queue's tenants in the order of their turns, read a chunk of the turns at a time
-- (TURNS_CHUNK entries), so that a page within one round of the turns costs O(page)
-- whatever the number of tenants. Each is a group {place, list, count, first, tenant}:
-- its place in the turns, the LIST of its ready jobs (all of them, or those after its
-- first when `first`, the id its turn carries), and how many ready jobs it has. A queue
-- without turns is one group: its jobs without a tenant.
local TURNS_CHUNK = 256

-- The group of the turns' entry at `place`, uncounted (nil for an entry not understood).
local function group_of(queue, place, entry)
  if entry == '' then
    return {place = place, list = ready_key(queue)}
  end
  local cut = string.find(entry, ' ', 1, true)
  if not cut then
    return nil
  end
  local tenant = string.sub(entry, cut + 1)
  return {place = place, list = tenant_key(queue, tenant), first = string.sub(entry, 1, cut - 1),
    tenant = tenant}
end

-- Fills in the count of each of `groups` (of one queue).
local function count_groups(queue, groups)
  local names, named = {}, {}
  for _, group in ipairs(groups) do
    if group.tenant then
      names[#names + 1] = group.tenant
      named[#names] = group
    else
      group.count = redis.call('LLEN', group.list)
    end
  end
  if #names > 0 then
    for i, count in ipairs(redis.call('HMGET', tenants_key(queue), unpack(names))) do
      named[i].count = tonumber(count) or 1
    end
  end
end

-- The groups of the tenant asked for (every one when none is), counted, at the places
-- from `from` on, one chunk of the turns; and whether the turns go on after it.
local function groups_from(queue, from)
  if not has_turns(queue) then
    local count = from == 0 and redis.call('LLEN', ready_key(queue)) or 0
    if count == 0 or tenant_filter ~= '' then
      return {}, false
    end
    return {{place = 0, list = ready_key(queue), count = count}}, false
  end
  local entries = redis.call('LRANGE', turns_key(queue), from, from + TURNS_CHUNK - 1)
  local groups = {}
  for i, entry in ipairs(entries) do
    local group = group_of(queue, from + i - 1, entry)
    if group and (tenant_filter == '' or group.tenant == tenant_filter) then
      groups[#groups + 1] = group
    end
  end
  count_groups(queue, groups)
  return groups, #entries == TURNS_CHUNK
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

-- The entry of the Queued index job `id` has now (nil: not Queued there).
local function queued_entry_now(id)
  local at = redis.call('HMGET', job_key(id), 'queued_at', 'created_at', 'q')
  return queued_entry(at[1] or at[2], id, at[3] or nil)
end

-- Looks at the ready job `id`, at `round` and `place` of the turns, as take does an
-- index's entry. Its position is "<round> <place> <its Queued index entry>" (the entry
-- names the job as queued then: one retried or requeued since is another); the position
-- of the job of the turns looked at just before, "<round> <place> <this job's entry>
-- <round> <place>": the job that comes next, where a page ending there resumes (see
-- walk_turns).
local function take_ready(id, round, place)
  local entry = queued_entry_now(id)
  if last_turn and last_turn.queue == scanning then
    local followed = last_turn.round .. ' ' .. last_turn.place .. ' ' .. entry .. ' ' .. round
      .. ' ' .. place
    if last == last_turn.text then
      last = followed
    end
    if last_turn.listed then
      entries[last_turn.listed] = followed
    end
  end
  if page_ended() then
    return false
  end
  local key = job_key(id)
  local listed = status_of(key) == 'Queued' and matches(key)
  local text = round .. ' ' .. place .. ' ' .. entry
  looked_at(text, key, id, listed)
  last_turn = {text = text, round = round, place = place, listed = listed and #jobs or nil,
    queue = scanning}
  return true
end

-- The group of `queue` holding the ready jobs of `tenant` (nil: none), looked for at
-- `place` first, then through the turns; nil when there is none.
local function group_for(queue, tenant, place)
  if not has_turns(queue) then
    return not tenant and {place = 0, list = ready_key(queue)} or nil
  end
  local entry = redis.call('LINDEX', turns_key(queue), place)
  local group = entry and group_of(queue, place, entry)
  if not (group and group.tenant == tenant) then
    group = nil
    local from, more_turns = 0, true
    while more_turns and not group do
      local entries = redis.call('LRANGE', turns_key(queue), from, from + TURNS_CHUNK - 1)
      for i, entry in ipairs(entries) do
        local found = group_of(queue, from + i - 1, entry)
        if found and found.tenant == tenant then
          group = found
          break
        end
      end
      from, more_turns = from + #entries, #entries == TURNS_CHUNK
    end
  end
  return group
end

-- The round and place in the turns of `queue` of the job queued as `entry` (which was at
-- round `was`, place `place`), or nil when it is not ready there now, or was queued
-- again since: O(1) steps when it has not moved, else O(its round + its tenant's place).
local function now_at(queue, entry, was, place)
  local id = queued_entry_id(entry)
  local at = redis.call('HMGET', job_key(id), 'status', 'behind', 'tenant', 'queue')
  if at[1] ~= 'Queued' or at[2] == '1' or (at[4] or DEFAULT_QUEUE) ~= queue
      or queued_entry_now(id) ~= entry then
    return nil
  end
  local group = group_for(queue, at[3] or nil, place)
  if not group then
    return nil
  end
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
  return index + shift, group.place
end

-- Lists the ready jobs of `queue` in claim order (the tenant asked for alone), from the
-- start or from a position (see take_ready); false when the page ended there. The rest
-- of the first round is read chunk by chunk; a page going on into the next rounds reads
-- the turns whole once.
--
-- A position with the job that came next (`next_round`) resumes at that job where it is
-- now, since claims move the jobs up; if it was cancelled, at its old place (the jobs
-- behind it moved up into it); if it was claimed (or queued again since), from the start,
-- since claims take the jobs before it first. A position of the last job looked at alone
-- (a page cut short by a filter's budget, or one that ended with the turns) resumes after
-- that job where it is now, else the same way.
local function walk_turns(queue, first_round, last_place, entry, next_round, next_place)
  if entry and next_round then
    local round, place = now_at(queue, entry, next_round, next_place)
    if round then
      first_round, last_place = round, place - 1
    elseif status_of(job_key(queued_entry_id(entry))) == 'Canceled' then
      first_round, last_place = next_round, next_place - 1
    else
      first_round, last_place = 0, -1
    end
  elseif entry then
    local round, place = now_at(queue, entry, first_round, last_place)
    if round then
      first_round, last_place = round, place
    elseif status_of(job_key(queued_entry_id(entry))) == 'Canceled' then
      last_place = last_place - 1
    else
      first_round, last_place = 0, -1
    end
  end
  local from, more_turns = last_place + 1, true
  while more_turns do
    local groups
    groups, more_turns = groups_from(queue, from)
    for _, group in ipairs(groups) do
      if group.count > first_round then
        local job = job_at(group, first_round)
        if job and not take_ready(job, first_round, group.place) then
          return false
        end
      end
    end
    from = from + TURNS_CHUNK
  end
  local round = first_round + 1
  local left = {}
  from, more_turns = 0, true
  while more_turns do
    local groups
    groups, more_turns = groups_from(queue, from)
    for _, group in ipairs(groups) do
      if group.count > round then
        left[#left + 1] = group
      end
    end
    from = from + TURNS_CHUNK
  end
  while #left > 0 do
    for _, group in ipairs(left) do
      local job = job_at(group, round)
      if job and not take_ready(job, round, group.place) then
        return false
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
        last, last_queue, last_turn = entry, scanning, nil
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
  -- The position: in the turns (see take_ready), else an entry of the Queued index.
  local first_round, last_place, turn_entry, next_round, next_place = 0, -1, nil, nil, nil
  local behind_after = nil
  if after then
    local fields = {}
    for field in string.gmatch(after, '%S+') do
      fields[#fields + 1] = field
    end
    if #fields == 3 or #fields == 5 then
      first_round, last_place, turn_entry = tonumber(fields[1]), tonumber(fields[2]), fields[3]
      next_round, next_place = tonumber(fields[4]), tonumber(fields[5])
    else
      behind_after = after
    end
  end
  for i = start, #order do
    local queue = order[i]
    scanning = queue
    local resumed = i == start and after
    if not (resumed and behind_after) then
      local going
      if resumed then
        going = walk_turns(queue, first_round, last_place, turn_entry, next_round, next_place)
      else
        going = walk_turns(queue, 0, -1)
      end
      if not going then
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
