-- batch_list: one page of batches, newest created first (ties by id, descending), from
-- the listing index of every batch or of one tenant's (_batch.lua): O(log n + page).
--
-- ARGV[1]  tenant ('' for every batch's)    ARGV[2]  the most batches on the page
-- ARGV[3]  the index entry the previous page ended at ('' for the first page)
--
-- Returns: {per batch, its id and hash as {field, value, ...}}, one batch past the page
-- when there is one. An entry whose batch is gone (its key expired) is dropped.

local index = BATCH.listing(ARGV[1] ~= '' and ARGV[1] or nil)
local top = ARGV[3] == '' and '+' or '(' .. ARGV[3]
local limit = tonumber(ARGV[2])
local out = {}
while #out < 2 * (limit + 1) do
  local entries = redis.call('ZREVRANGEBYLEX', index, top, '-', 'LIMIT', 0, limit + 1)
  if #entries == 0 then
    break
  end
  for _, entry in ipairs(entries) do
    local batch_id = entry_id(entry)
    local fields = redis.call('HGETALL', batch_key(batch_id))
    if #fields > 0 then
      push(out, batch_id, fields)
      if #out >= 2 * (limit + 1) then
        break
      end
    else
      redis.call('ZREM', index, entry)
    end
    top = '(' .. entry
  end
end
return out
