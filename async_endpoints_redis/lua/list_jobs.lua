-- list_jobs: one page of jobs, in the order of async_endpoints/_listing.py.
--
-- ARGV[1]  the status ('' for every job)
-- ARGV[2]  the queue filter ('' for none)
-- ARGV[3]  the most jobs on the page
-- ARGV[4]  the most entries looked at (bounds the work a queue or tenant filter may spend)
-- ARGV[5]  the queues, highest priority first, as a JSON array (the order of Queued jobs;
--          other queues that hold jobs follow, by name)
-- ARGV[6]  where the previous page ended: an index entry ('' for the start): "<ms>:<id>",
--          or for Queued jobs a queued_entry (_index.lua) of the queue named by ARGV[7]
-- ARGV[8]  the tenant filter ('' for none)
-- ARGV[9]  the batch filter: a batch id ('' for none)
--
-- Where the jobs come from:
--   Queued      each queue's Queued index (by due moment, then id), queue after queue in
--               priority order: O(log n + page); jobs waiting behind their partition key
--               are there too
--   InProgress  {p}:running, oldest started_at first: O(log n + page)
--   Scheduled   the 'Scheduled' index (by run_at), soonest first: O(log n + page)
--   terminal    the status's index (by completed_at), newest first: O(log n + page)
--   none        the 'created' index, newest first: O(log n + page)
-- With a queue, tenant or batch filter every entry looked at counts against ARGV[4]: the page
-- may come back short, with a position to go on from.
--
-- Returns: {jobs, position, queue, entries, queues}: jobs as job_text (_lib.lua) values;
-- the position to pass for the next page ('' when this page is the last) and, for
-- Queued, the queue of its index; then each listed job's own entry and the queue of its
-- index ('' but for Queued): the position right after that job (a sharded store's
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

-- Looks at one entry's job: listed when it still exists, has the status asked for (any
-- when none is) and matches the filters. False once the page is full or the budget is
-- spent (the entry is then left for the next page).
local function take(entry, id, wanted)
  if #jobs >= limit or looked >= budget then
    more = true
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
  looked = looked + 1
  last = entry
  if fresh and current and (wanted == nil or current == wanted) and matches(key) then
    jobs[#jobs + 1] = job_text(key, id)
    entries[#jobs] = entry
    entry_queues[#jobs] = scanning
  end
  return true
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
  local position_queue = ''
  for i = start, #order do
    local queue = order[i]
    scanning, scanning_index = queue, queued_index(queue)
    index_scan(queued_index(queue), i == start and after or nil, false, function(entry)
      if not take(entry, queued_entry_id(entry), 'Queued') then
        return false
      end
      position_queue = queue
      return true
    end)
    if more then
      break
    end
  end
  index_flush()  -- the stale entries met
  return {jobs, more and last or '', more and position_queue or '', entries, entry_queues}
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
