-- Sorted indexes for listing (included after _lib.lua): the jobs of one kind ordered by a
-- time and then by id, read a page at a time in O(log n + page) and kept as small as a
-- list entry.
--
-- An entry is the text "<ms, 14 digits>:<id>", so text order is (time, id) order (the
-- Queued indexes, which hold every waiting job, use a shorter form: queued_entry). One
-- ZSET holding every entry would cost about 155 bytes an entry (a skiplist node and a
-- dict entry); instead an index is cut into chunks of at most INDEX_CHUNK entries, each a
-- small ZSET that Redis keeps as a listpack (about 50 bytes an entry):
--
--   {p}:ix:<name>          ZSET (all scores 0, ordered by text): "<floor entry> <n>" per
--                          chunk; chunk n holds the entries from its floor up to the next
--                          chunk's floor
--   {p}:ix:<name>:<n>      ZSET (all scores 0): the entries of chunk n
--   {p}:ix:<name>:n        STRING the last chunk number given out
--
-- Entries are mostly appended (times grow), which fills the last chunk and then opens a
-- new one; an entry inside a full chunk splits it (see index_write). A chunk left empty
-- is deleted. Every operation costs O(log number of chunks + INDEX_CHUNK); the entries a
-- script adds or removes are written together at its end, one ZADD or ZREM per chunk.

local INDEX_CHUNK = 100

local function index_entry(moment, id)
  return string.format('%014d', math.max(0, tonumber(moment) or 0)) .. ':' .. id
end

-- The id in an entry.
local function entry_id(entry)
  return string.sub(entry, 16)
end

-- The entry of a Queued index: the time in 11 lowercase hex digits (text order is time
-- order up to 16^11 ms, the year 2527), the job's sequence number within that millisecond
-- (seq: 4 hex digits, see queued_seq below), so that jobs queued in the
-- same millisecond are listed in the order they were queued, the order workers take
-- them; then the id's 32 hex digits without its dashes: 47 bytes. An entry written
-- before the sequence numbers (seq nil: a job an older version queued) has none: 43.
local function queued_entry(moment, id, seq)
  local at = string.format('%011x', math.max(0, tonumber(moment) or 0))
  if seq then
    at = at .. string.format('%04x', tonumber(seq) or 0)
  end
  return at .. string.sub(id, 1, 8) .. string.sub(id, 10, 13) .. string.sub(id, 15, 18)
    .. string.sub(id, 20, 23) .. string.sub(id, 25)
end

local function index_dir(name)
  return P .. 'ix:' .. name
end

local function index_chunk(name, n)
  return P .. 'ix:' .. name .. ':' .. n
end

-- The directory member of the chunk that holds (or would hold) entry, or nil when entry
-- sorts before every chunk's floor. ' ' sorts before '!', so "<entry> <n>" < "<entry>!".
local function index_member_for(name, entry)
  local found = redis.call('ZREVRANGEBYLEX', index_dir(name), '(' .. entry .. '!', '-',
    'LIMIT', 0, 1)
  return found[1]
end

local function member_chunk(name, member)
  return index_chunk(name, string.match(member, ' (%d+)$'))
end

local function index_new_chunk(name, entries)
  local n = redis.call('INCR', index_dir(name) .. ':n')
  local scored = {}
  for i, entry in ipairs(entries) do
    scored[2 * i - 1] = 0
    scored[2 * i] = entry
  end
  redis.call('ZADD', index_chunk(name, n), unpack(scored))
  redis.call('ZADD', index_dir(name), 0, entries[1] .. ' ' .. n)
end

-- Writes sorted entries: each run of entries that belongs to one chunk (up to its next
-- chunk's floor, while it has room) is one ZADD. A full chunk is cut where the entry goes
-- when few entries lie above it (so chunks filled by appends stay nearly full), else in
-- halves; an entry past a full chunk's last opens a new chunk.
local function index_write(name, entries)
  local dir = index_dir(name)
  local i = 1
  while i <= #entries do
    local entry = entries[i]
    local member = index_member_for(name, entry)
    if not member then
      -- Before every floor: the first chunk takes it (its floor lowered) while it has room.
      local first = redis.call('ZRANGE', dir, 0, 0)[1]
      if first and redis.call('ZCARD', member_chunk(name, first)) < INDEX_CHUNK then
        redis.call('ZREM', dir, first)
        member = entry .. string.match(first, ' %d+$')
        redis.call('ZADD', dir, 0, member)
      else
        index_new_chunk(name, {entry})
        i = i + 1
      end
    end
    if member then
      local chunk = member_chunk(name, member)
      local size = redis.call('ZCARD', chunk)
      if size >= INDEX_CHUNK then
        local upper = redis.call('ZRANGEBYLEX', chunk, '(' .. entry, '+')
        if #upper == 0 then
          index_new_chunk(name, {entry})
          i = i + 1
        else
          if #upper > size / 2 then
            upper = redis.call('ZRANGE', chunk, math.floor(size / 2), -1)
          end
          redis.call('ZREM', chunk, unpack(upper))
          index_new_chunk(name, upper)  -- then the entry is placed afresh
        end
      else
        local following = redis.call('ZRANGEBYLEX', dir, '(' .. member, '+', 'LIMIT', 0, 1)[1]
        local batch = {}
        while i <= #entries and size < INDEX_CHUNK
            and (not following or entries[i] .. '!' < following) do
          batch[#batch + 1] = 0
          batch[#batch + 1] = entries[i]
          size = size + 1
          i = i + 1
        end
        redis.call('ZADD', chunk, unpack(batch))
      end
    end
  end
end

-- Removes sorted entries: each run of entries that belongs to one chunk is one ZREM; a
-- chunk left empty leaves the directory.
local function index_delete(name, entries)
  local dir = index_dir(name)
  local i = 1
  while i <= #entries do
    local member = index_member_for(name, entries[i])
    if not member then
      i = i + 1  -- before every floor: not in the index
    else
      local following = redis.call('ZRANGEBYLEX', dir, '(' .. member, '+', 'LIMIT', 0, 1)[1]
      local batch = {}
      while i <= #entries and (not following or entries[i] .. '!' < following) do
        batch[#batch + 1] = entries[i]
        i = i + 1
      end
      local chunk = member_chunk(name, member)
      redis.call('ZREM', chunk, unpack(batch))
      if redis.call('EXISTS', chunk) == 0 then
        redis.call('ZREM', dir, member)
      end
    end
  end
end

-- Index entries added and removed by this script, per index as sets {entry = true},
-- written (sorted, in runs of one chunk) by index_flush(), which flush_pending() in
-- _bookkeeping.lua calls before the script returns. An entry removed after it was added in
-- the same script (or added back after its removal) is never written.
local index_adds, index_drops = {}, {}

local function pending_set(sets, name)
  local set = sets[name]
  if not set then
    set = {}
    sets[name] = set
  end
  return set
end

local function index_add_entry(name, entry)
  local drops = index_drops[name]
  if drops and drops[entry] then
    drops[entry] = nil
  else
    pending_set(index_adds, name)[entry] = true
  end
end

local function index_remove_entry(name, entry)
  local adds = index_adds[name]
  if adds and adds[entry] then
    adds[entry] = nil
  else
    pending_set(index_drops, name)[entry] = true
  end
end

local function index_add(name, moment, id)
  index_add_entry(name, index_entry(moment, id))
end

local function index_remove(name, moment, id)
  index_remove_entry(name, index_entry(moment, id))
end

local function sorted_keys(set)
  local out = {}
  for entry in pairs(set) do
    out[#out + 1] = entry
  end
  table.sort(out)
  return out
end

-- queued_seq: the sequence number of a job entering Queued at moment (ms), for its
-- entry (queued_entry). {p}:qseq holds "<moment> <n>": the latest moment a job entered
-- Queued at and the number the last of them got; a job entering at that moment is the
-- next, one at a later moment the first (0) of its own, and one at an earlier moment (a
-- retry's or a delay's due time gone by) is numbered LATE_SEQ, after the jobs queued
-- when it fell due (it entered its queue after them). Read once a script call and
-- written by index_flush.
local LATE_SEQ = 65535
local qseq_last  -- {moment, n} as this script call last read or numbered
local qseq_dirty = false

local function queued_seq(moment)
  local m = tonumber(moment) or 0
  if not qseq_last then
    local stored = redis.call('GET', P .. 'qseq')
    local at, n = string.match(stored or '', '^(%d+) (%d+)$')
    qseq_last = {tonumber(at) or -1, tonumber(n) or 0}
  end
  local n
  if m == qseq_last[1] then
    n = math.min(qseq_last[2] + 1, LATE_SEQ - 1)
  elseif m > qseq_last[1] then
    n = 0
  else
    return LATE_SEQ
  end
  qseq_last, qseq_dirty = {m, n}, true
  return n
end

local function index_flush()
  for name, set in pairs(index_drops) do
    index_delete(name, sorted_keys(set))
  end
  for name, set in pairs(index_adds) do
    index_write(name, sorted_keys(set))
  end
  index_adds, index_drops = {}, {}
  if qseq_dirty then
    redis.call('SET', P .. 'qseq', string.format('%.0f %d', qseq_last[1], qseq_last[2]))
    qseq_dirty = false
  end
end
