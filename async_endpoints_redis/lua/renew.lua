-- renew: extend the leases of claims that are still owned, in one call for a batch.
--
-- ARGV[1]  lease (ms)
-- ARGV[2], ARGV[3], ...  pairs of job id and claim token
--
-- Returns: the tokens of the claims that are lost (the job's token differs: it was
-- recovered, settled, cancelled or expired); those are left unchanged. Tokens, not ids: a
-- stale and a fresh claim of one job may be renewed together.

even_when_full()
local deadline = clock_ms() + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  if owns(job_key(id), ARGV[i + 1]) then
    redis.call('ZADD', K.active, deadline, id)
  else
    lost[#lost + 1] = ARGV[i + 1]
  end
end
return lost
