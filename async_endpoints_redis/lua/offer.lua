-- offer: an idle worker asks for new jobs to be handed to it directly (see enqueue_many),
-- replacing its previous offer (ended as by withdraw), unless work is claimable already.
--
-- KEYS[1]  the ready queue (LIST)    KEYS[2]  the scheduled ZSET
-- KEYS[3]  the active ZSET           KEYS[4]  the job key prefix ("{p}:job:")
-- KEYS[5]  the offers HASH           KEYS[6]  the idle LIST (inboxes with an offer)
-- KEYS[7]  the given-list key prefix ("{p}:given:")
-- ARGV[1]  the worker's inbox        ARGV[2]  a new random token base
-- ARGV[3]  slots offered (0: none; only the due time is asked)
-- ARGV[4]  lease (ms) of the jobs handed over
-- ARGV[5]  how long the offer stands (ms) unless renewed
-- ARGV[6], ...  tokens of the previous offer's jobs the worker started
--
-- Returns: -2 when a job is Queued (claim now; no offer made), else the ms until the
-- earliest Scheduled job is due (0: due now, no offer made) or -1 when none is.

local k = {offers = KEYS[5], idle = KEYS[6], queue = KEYS[1], active = KEYS[3],
  jobs = KEYS[4], given = KEYS[7]}
even_when_full()
local clock = clock_ms()
local now = now_ms()
withdraw(k, ARGV[1], tail(ARGV, 6), now)

-- Collect a few offers of workers that never came back: once expired for longer than
-- their lease, whatever they were handed has been recovered and nothing is left to
-- withdraw.
for _, inbox in ipairs(redis.call('HRANDFIELD', KEYS[5], 3)) do
  local offer = redis.call('HGET', KEYS[5], inbox)
  local _, _, lease, expires = parse_offer(offer or '')
  if not expires or expires + lease < clock then
    redis.call('HDEL', KEYS[5], inbox)
    redis.call('LREM', KEYS[6], 0, inbox)
  end
end
if redis.call('LLEN', KEYS[1]) > 0 then
  return -2
end
local due = -1
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first > 0 then
  due = math.max(0, tonumber(first[2]) - clock)
  if due == 0 then
    return 0
  end
end
if tonumber(ARGV[3]) <= 0 then
  return due
end
local expires = clock + tonumber(ARGV[5])
redis.call('HSET', KEYS[5], ARGV[1],
  ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ms(expires))
redis.call('RPUSH', KEYS[6], ARGV[1])
return due
