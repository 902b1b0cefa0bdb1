-- complete_many: claimed jobs succeeded; each becomes Completed with its result. One call
-- settles every completion a worker process made in the same event-loop turn.
--
-- ARGV[1], ARGV[2], ARGV[3], ARGV[4], ...  4-tuples of job id, claim token, result JSON,
--          and what is kept of the captured request ('' for nothing): a Completed job never
--          runs again, so only its owner and trace context stay
--
-- A job first in its partition key's lane hands the key to the next job in the same step
-- (see lane_leave in _lifecycle.lua), which is claimable when this call returns.
--
-- Returns: {per tuple, in order, the completion time (ms), or -1 when that claim is lost
-- (that job is left unchanged; a cancelled one's attempt lets go of the partition key it
-- kept: let_go in _lifecycle.lua); 1 when a next job of a key became ready, else 0 (the
-- caller's own workers need not wait for the wake message then)}.

even_when_full()
local clock = clock_ms()
local now = now_ms()
local replies = {}
for i = 1, #ARGV, 4 do
  local id = ARGV[i]
  local key = job_key(id)
  local held = redis.pcall('HMGET', key, 'token', 'queue', 'started_at', 'partition_key',
    'follow', 'for')
  if type(held) == 'table' and held[1] == ARGV[i + 1] then
    hook_fields[key] = {held[5] or false, held[6] or false}
    complete(key, id, ARGV[i + 2], ARGV[i + 3], now, clock, held[2] or DEFAULT_QUEUE, held[3],
      held[4] or nil)
    replies[#replies + 1] = now
  else
    let_go(id, ARGV[i + 1])
    replies[#replies + 1] = -1
  end
end
local moved = lanes_moved and 1 or 0
flush_pending()
return {replies, moved}
