-- renew: extend the leases of claims that are still owned, in one call for a batch.
--
-- ARGV[1]  lease (ms)
-- ARGV[2], ARGV[3], ...  pairs of job id and claim token
--
-- Returns: the tokens of the claims that are lost (the job's token differs: it was
-- recovered, settled, cancelled or expired); those are left unchanged, but for the lease
-- of a cancelled job's attempt that keeps its partition key ({p}:held, see
-- _lifecycle.lua), which is extended: the key stays the attempt's while it runs. Tokens,
-- not ids: a stale and a fresh claim of one job may be renewed together.

even_when_full()
clock_ms()
local deadline = LEASE_FROM + tonumber(ARGV[1])  -- see _lib.lua: late in a stall too
local lost = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if owns(job_key(id), ARGV[i + 1]) then
    redis.call('ZADD', K.active, deadline, id)
  else
    local token = ARGV[i + 1]
    lost[#lost + 1] = token
    local held = redis.call('HGET', K.held_by, id)
    if held and string.sub(held, 1, #token + 1) == token .. ' ' then
      redis.call('ZADD', K.held, 'XX', deadline, id)
    end
  end
end
return lost
