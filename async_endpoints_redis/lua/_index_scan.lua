-- Reading the sorted indexes of _index.lua (included after it, by list_jobs.lua only: the
-- other scripts never read an index).

-- The id (with its dashes) in a Queued index entry (its last 32 characters, with a
-- sequence number before them or not).
local function queued_entry_id(entry)
  local hex = string.sub(entry, -32)
  return string.sub(hex, 1, 8) .. '-' .. string.sub(hex, 9, 12) .. '-' .. string.sub(hex, 13, 16)
    .. '-' .. string.sub(hex, 17, 20) .. '-' .. string.sub(hex, 21)
end

-- Calls visit(entry) for the entries after the entry `after` (nil: from the first), in
-- ascending or descending order, until visit returns false or the index ends.
local function index_scan(name, after, descending, visit)
  local dir = index_dir(name)
  local member
  if after then
    member = index_member_for(name, after)
  end
  if not member and (descending and after) then
    return
  end
  if not member then
    member = redis.call('ZRANGE', dir, descending and -1 or 0, descending and -1 or 0)[1]
  end
  while member do
    local chunk = member_chunk(name, member)
    local entries
    if descending then
      entries = redis.call('ZREVRANGEBYLEX', chunk, after and ('(' .. after) or '+', '-')
    else
      entries = redis.call('ZRANGEBYLEX', chunk, after and ('(' .. after) or '-', '+')
    end
    for _, entry in ipairs(entries) do
      if not visit(entry) then
        return
      end
    end
    after = nil
    if descending then
      member = redis.call('ZREVRANGEBYLEX', dir, '(' .. member, '-', 'LIMIT', 0, 1)[1]
    else
      member = redis.call('ZRANGEBYLEX', dir, '(' .. member, '+', 'LIMIT', 0, 1)[1]
    end
  end
end
