-- enqueue_many: store new jobs. A job goes straight to an idle worker that has an open
-- offer (see offer.lua) when nothing is queued ahead of it; otherwise it is Queued at the
-- tail of the ready queue and workers are woken. One call carries every submission a
-- process made in the same event-loop turn.
--
-- KEYS[1]  the ready queue (LIST)    KEYS[2]  the scheduled ZSET
-- KEYS[3]  the job key prefix ("{p}:job:")
-- KEYS[4]  the active ZSET           KEYS[5]  the offers HASH
-- KEYS[6]  the idle LIST             KEYS[7]  the given-list key prefix ("{p}:given:")
-- ARGV[1]  the wake channel          ARGV[2]  the inbox channel prefix ("{p}:inbox:")
-- ARGV[3], ARGV[4], ...  5-tuples of job id, job name, max_retries, request JSON (or ''
--          for an empty request), and the most waiting jobs allowed (-1: no limit)
--
-- Handing over: the job is stored InProgress under a token of the offer ("<base>.<n>",
-- n counting the jobs the offer got, which its given-list records), with the offer's
-- lease, and published to the worker's inbox as "<id>" followed by the job's hash as a
-- JSON array {field, value, ...}. It is handed over only when the worker's subscription
-- to its inbox is live on this node, and only when its request is at most 8 KiB (larger
-- ones are queued: pub/sub is no place for big payloads); an offer whose worker is gone,
-- that expired or that is used up loses its turn. Offers take turns, so a burst spreads
-- over the idle workers.
--
-- Returns: {replies, queued}: per job, in order, its created-at time (ms), -1 when the id
-- exists (that job is left unchanged) or -2 when its limit of waiting (Queued or
-- Scheduled) jobs is reached (nothing stored for it); and how many jobs were Queued
-- rather than handed over.

local clock = clock_ms()
local now = now_ms()
local stamp = ms(now)
local waiting = nil
local queued = 0
local queue_empty = redis.call('LLEN', KEYS[1]) == 0

-- Stores the job InProgress for an open offer and tells its worker; false when no live
-- offer is open.
local function hand_over(key, id, fields)
  while true do
    local inbox = redis.call('LINDEX', KEYS[6], 0)
    if not inbox then
      return false
    end
    local offer = redis.call('HGET', KEYS[5], inbox)
    local base, slots, lease, expires = nil, 0, 0, 0
    if offer then
      base, slots, lease, expires = parse_offer(offer)
    end
    local channel = ARGV[2] .. inbox
    -- NUMSUB counts the worker's own subscription on this node (pattern subscribers and
    -- other nodes' subscribers do not count), and nothing is published unless stored. A
    -- user not allowed PUBSUB gets no hand-over: its jobs are queued as usual.
    local listening = false
    if base and slots > 0 and expires > clock then
      local count = redis.pcall('PUBSUB', 'NUMSUB', channel)
      listening = type(count) == 'table' and tonumber(count[2]) ~= nil and tonumber(count[2]) > 0
    end
    if listening then
      local given = KEYS[7] .. base
      local token = base .. '.' .. (redis.call('LLEN', given) + 1)
      local handed = {}
      for _, value in ipairs(fields) do
        handed[#handed + 1] = value
      end
      handed[4] = 'InProgress'  -- fields[3] is 'status'
      for _, value in ipairs({'token', token, 'started_at', stamp}) do
        handed[#handed + 1] = value
      end
      redis.call('HSET', key, unpack(handed))
      redis.call('ZADD', KEYS[4], clock + lease, id)
      redis.call('RPUSH', given, id)
      -- Kept while the offer may still hand jobs over, and then for a lease, so that
      -- token numbers never repeat within an offer.
      redis.call('PEXPIRE', given, expires - clock + lease)
      -- A used-up offer stays in the HASH until its worker withdraws it, which puts
      -- back what it was handed but did not start.
      redis.call('HSET', KEYS[5], inbox,
        base .. ' ' .. (slots - 1) .. ' ' .. lease .. ' ' .. ms(expires))
      if slots == 1 then
        redis.call('LPOP', KEYS[6])
      else
        redis.call('LMOVE', KEYS[6], KEYS[6], 'LEFT', 'RIGHT')
      end
      redis.call('PUBLISH', channel, id .. cjson.encode(handed))
      return true
    end
    -- Used up, expired, gone or unreachable for now: out of turn. Its record stays for
    -- its worker's withdrawal (offer.lua collects those of workers that never return).
    redis.call('LPOP', KEYS[6])
  end
end

local replies = {}
for i = 3, #ARGV, 5 do
  local id = ARGV[i]
  local key = KEYS[3] .. id
  local limit = tonumber(ARGV[i + 4])
  if limit >= 0 and waiting == nil then
    waiting = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  end
  if redis.call('EXISTS', key) == 1 then
    replies[#replies + 1] = -1
  elseif limit >= 0 and waiting >= limit then
    replies[#replies + 1] = -2
  else
    -- Left out while they hold their defaults, to keep the hash small: retry_count (0),
    -- last_updated_at (created_at) and request (empty).
    local fields = {'name', ARGV[i + 1], 'status', 'Queued', 'max_retries', ARGV[i + 2],
      'created_at', stamp}
    if ARGV[i + 3] ~= '' then
      fields[#fields + 1] = 'request'
      fields[#fields + 1] = ARGV[i + 3]
    end
    if not (queue_empty and #ARGV[i + 3] <= 8192 and hand_over(key, id, fields)) then
      redis.call('HSET', key, unpack(fields))
      redis.call('RPUSH', KEYS[1], id)
      queue_empty = false
      queued = queued + 1
      if waiting ~= nil then
        waiting = waiting + 1
      end
    end
    replies[#replies + 1] = now
  end
end
if queued > 0 then
  redis.call('PUBLISH', ARGV[1], '')
end
return {replies, queued}
