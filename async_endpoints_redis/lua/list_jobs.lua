-- list_jobs: one page of jobs, in the order of async_endpoints/_listing.py.
--
-- ARGV[1]  the status ('' for every job)
-- ARGV[2]  the queue filter ('' for none)
-- ARGV[3]  the most jobs on the page
-- ARGV[4]  the most entries looked at (bounds the work a queue filter may spend)
-- ARGV[5]  the queues, highest priority first, as a JSON array (the order of Queued jobs;
--          other queues that hold jobs follow, by name)
-- ARGV[6]  where the previous page ended: an index entry "<ms>:<id>" ('' for the start),
--          or for Queued jobs the queue's name, with ARGV[7] the offset in its LIST
--
-- Where the jobs come from:
--   Queued      the queues' LISTs, by LRANGE from the offset: O(offset + page) (a deep
--               page of a long queue walks the list up to its offset)
--   InProgress  {p}:running, oldest started_at first: O(log n + page)
--   Scheduled   the 'Scheduled' index (by run_at), soonest first: O(log n + page)
--   terminal    the status's index (by completed_at), newest first: O(log n + page)
--   none        the 'created' index, newest first: O(log n + page)
-- With a queue filter every entry looked at counts against ARGV[4]: the page may come
-- back short, with a position to go on from.
--
-- Returns: {jobs, position, offset}: jobs as job_text (_lib.lua) values; the position to
-- pass for the next page ('' when this page is the last) and, for Queued, its offset;
-- or {'invalid'} when ARGV[6] names a queue this listing does not visit.

local status, queue_filter = ARGV[1], ARGV[2]
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local after = ARGV[6] ~= '' and ARGV[6] or nil
local jobs = {}
local looked = 0
local last = nil
local more = false

-- Looks at one entry's job: listed when it still exists, has the status asked for (any
-- when none is) and is of the queue asked for. False once the page is full or the budget
-- is spent (the entry is then left for the next page).
local function take(entry, id, wanted)
  if #jobs >= limit or looked >= budget then
    more = true
    return false
  end
  looked = looked + 1
  last = entry
  local key = job_key(id)
  local current = status_of(key)
  if current and (wanted == nil or current == wanted)
      and (queue_filter == '' or queue_of(key) == queue_filter) then
    jobs[#jobs + 1] = job_text(key, id)
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
  local start, offset = 1, 0
  if after then
    start = nil
    for i, queue in ipairs(order) do
      if queue == after then
        start = i
      end
    end
    if not start then
      return {'invalid'}
    end
    offset = tonumber(ARGV[7]) or 0
  end
  local position, position_offset = '', 0
  for i = start, #order do
    local queue = order[i]
    local from = i == start and offset or 0
    while not more do
      local ids = redis.call('LRANGE', ready_key(queue), from, from + limit - #jobs)
      if #ids == 0 then
        break
      end
      for j, id in ipairs(ids) do
        if not take(id, id, 'Queued') then
          break
        end
        position, position_offset = queue, from + j
      end
      from = from + #ids
    end
    if more then
      break
    end
  end
  if not more then
    position = ''
  end
  return {jobs, position, position_offset}
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
  index_scan('created', after, true, function(entry)
    return take(entry, entry_id(entry), nil)
  end)
else
  index_scan(status, after, status ~= 'Scheduled', function(entry)
    return take(entry, entry_id(entry), status)
  end)
end
return {jobs, more and last or '', 0}
