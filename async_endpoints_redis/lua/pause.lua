-- pause: pause or resume queues ({p}:paused, a SET of queue names, which the claim, offer
-- and enqueue scripts read in the same step as they take or hand over jobs).
--
-- ARGV[1]  'pause' or 'resume'
-- ARGV[2], ...  the queue names
--
-- Returns: the paused queues now. A resume wakes idle workers everywhere.

even_when_full()
local names = tail(ARGV, 2)
if #names > 0 then
  if ARGV[1] == 'pause' then
    redis.call('SADD', K.paused, unpack(names))
  else
    redis.call('SREM', K.paused, unpack(names))
    wake()
  end
end
return redis.call('SMEMBERS', K.paused)
