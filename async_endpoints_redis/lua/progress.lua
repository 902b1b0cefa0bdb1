-- Sets a running job's progress (ctx.report_progress, coalesced by the engine), checked
-- against the claim's token, and tells its watchers (when watched): 'p', the id, then the
-- progress JSON, on the events channel.
-- ARGV: id, token, progress (JSON text)
-- Returns: 1, or 0 when the claim is lost (nothing changed).
local id, token, progress = ARGV[1], ARGV[2], ARGV[3]
local key = job_key(id)
if not owns(key, token) then
  return 0
end
redis.call('HSET', key, 'progress', progress)
if is_watched(id) then
  redis.call('PUBLISH', EVENTS, 'p' .. id .. progress)
end
return 1
