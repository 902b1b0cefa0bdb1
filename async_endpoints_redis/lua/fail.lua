-- fail: an attempt of the claimed job failed; retry it (Queued or Scheduled) while
-- retries are left and a delay is given, else it becomes Failed for good. With ARGV[5]
-- '1' the attempt is given back instead (its worker stopped before it ended): Queued
-- again, or Scheduled in ARGV[4] ms, not counted, its error as it was (ARGV[3] unread).
-- With ARGV[5] '2' the claim is undone (it never reached a worker: a sharded store's
-- resent claim beyond its room): Queued again at the head of its queue, as an offer's
-- unstarted job goes back (unclaim in _lifecycle.lua: no attempt, the start time it had
-- before the claim; ARGV[3] and ARGV[4] unread).
--
-- ARGV[1]  job id                    ARGV[2]  claim token
-- ARGV[3]  error JSON                ARGV[4]  retry delay (ms), or '' for no retry
-- ARGV[5]  '1' to give the attempt back uncounted, '2' to undo the claim (optional)
--
-- Returns: the job's hash as {field, value, ...}, or false when the claim is lost
-- (nothing changed; when the job was cancelled while this attempt ran, the attempt lets
-- go of the partition key it kept: let_go in _lifecycle.lua).

even_when_full()
local id = ARGV[1]
local key = job_key(id)
if not owns(key, ARGV[2]) then
  if let_go(id, ARGV[2]) then
    flush_pending()
  end
  return false
end
local clock = clock_ms()
local now = now_ms()
if ARGV[5] == '1' then
  retry(key, id, now, clock, tonumber(ARGV[4]) or 0, true)
  wake()
elseif ARGV[5] == '2' then
  unclaim(key, id, now)
  wake()
else
  redis.call('HSET', key, 'error', ARGV[3])
  if failed_attempt(key, id, now, clock, tonumber(ARGV[4])) then
    wake()
  end
end
flush_pending()
return redis.call('HGETALL', key)
