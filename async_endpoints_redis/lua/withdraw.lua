-- withdraw: a worker ends its offer (see offer.lua); the jobs handed to it that it did
-- not start go back to the head of the queue, and other workers are woken for them.
--
-- KEYS[1]  the ready queue (LIST)    KEYS[2]  the active ZSET
-- KEYS[3]  the job key prefix        KEYS[4]  the offers HASH
-- KEYS[5]  the idle LIST             KEYS[6]  the given-list key prefix
-- ARGV[1]  the worker's inbox        ARGV[2]  the wake channel
-- ARGV[3], ...  tokens of the offer's jobs the worker started
--
-- Returns: how many jobs went back to the queue.

local k = {offers = KEYS[4], idle = KEYS[5], queue = KEYS[1], active = KEYS[2],
  jobs = KEYS[3], given = KEYS[6]}
even_when_full()
local back = withdraw(k, ARGV[1], tail(ARGV, 3), now_ms())
if back > 0 then
  redis.call('PUBLISH', ARGV[2], '')
end
return back
