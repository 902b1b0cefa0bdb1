-- queue_stats: counts per queue, O(number of queues).
--
-- ARGV[1], ...  the queue names
--
-- Returns: per queue, in order, {paused (0 or 1), queued, scheduled, in_progress,
-- completed, failed, canceled}.

local STATUSES = {'Queued', 'Scheduled', 'InProgress', 'Completed', 'Failed', 'Canceled'}
local paused = paused_set()
local out = {}
for _, queue in ipairs(ARGV) do
  local fields = {}
  for i, status in ipairs(STATUSES) do
    fields[i] = queue .. ':' .. status
  end
  local counts = redis.call('HMGET', K.counts, unpack(fields))
  local row = {paused[queue] and 1 or 0}
  for i = 1, #STATUSES do
    row[#row + 1] = math.max(0, tonumber(counts[i]) or 0)
  end
  out[#out + 1] = row
end
return out
