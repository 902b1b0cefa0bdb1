-- offer: an idle worker asks for new jobs of its queues to be handed to it directly (see
-- enqueue_many), replacing its previous offer (ended as by withdraw), unless work is
-- claimable already.
--
-- ARGV[1]  "<the worker's inbox> <n>": the offers numbered n or lower end (see end_offer
--          in _offers.lua); this one is numbered n + 1, in its token base
-- ARGV[2]  the offer's token base (numbered: see end_offer)
-- ARGV[3]  slots offered (0: none; only the due time is asked)
-- ARGV[4]  lease (ms) of the jobs handed over
-- ARGV[5]  how long the offer stands (ms) unless renewed
-- ARGV[6]  the queues the worker serves, highest priority first, as a JSON array
-- ARGV[7], ...  tokens of the previous offer's jobs the worker started
--
-- Returns: -2 when a job is Queued in one of the worker's queues that is not paused
-- (claim now; no offer made), else the ms until the earliest Scheduled job is due (0:
-- due now, no offer made) or -1 when none is.

even_when_full()
local clock = clock_ms()
local now = now_ms()
local mine = inbox_of(ARGV[1])
local _, ended = end_offer(ARGV[1], tail(ARGV, 7), now)
flush_pending()
if mine ~= '' and number_of(ARGV[2]) <= ended then
  return -2  -- a call the worker sent after this one has run: no offer (it claims next)
end

-- Collect a few offers of workers that never came back: once expired for longer than
-- their lease, whatever they were handed has been recovered and nothing is left to
-- withdraw.
for _, inbox in ipairs(redis.call('HRANDFIELD', K.offers, 3)) do
  local offer = redis.call('HGET', K.offers, inbox)
  local _, _, lease, expires = parse_offer(offer or '')
  if not expires or expires + lease < clock then
    redis.call('HDEL', K.offers, inbox)
    redis.call('LREM', K.idle, 0, inbox)
  end
end
local queues = queue_list(ARGV[6])
if ready_any(open_queues(queues)) then
  return -2
end
local due = -1
local first = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
if #first > 0 then
  due = math.max(0, tonumber(first[2]) - clock)
  if due == 0 then
    return 0
  end
end
if tonumber(ARGV[3]) <= 0 then
  return due
end
local standing = redis.call('HGET', K.offers, mine)
if standing and parse_offer(standing) == ARGV[2] then
  return due  -- a resend (its reply was lost): made already, its used slots stay used
end
local expires = clock + tonumber(ARGV[5])
redis.call('HSET', K.offers, mine, ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' '
  .. ms(expires) .. ' ' .. cjson.encode(queues))
redis.call('RPUSH', K.idle, mine)
return due
