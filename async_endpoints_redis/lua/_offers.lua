-- Offers (included after _lifecycle.lua): an idle worker's standing request for new jobs,
-- stored in the offers HASH under the worker's inbox name as
-- "<token base> <slots left> <lease ms> <expires at ms> <queues as JSON>" (expires at:
-- on the elapsed-time clock; the queues the worker serves, in priority order). The idle
-- LIST holds the inboxes with an offer, in turn order; {p}:given:<base> the ids handed to
-- one offer.

local function parse_offer(offer)
  local base, slots, lease, expires, queues =
    string.match(offer, '^(%S+) (%d+) (%d+) (%d+) ?(.*)$')
  return base, tonumber(slots), tonumber(lease), tonumber(expires), queues
end

-- The inbox named by a caller's "<inbox> <base> ..." (see end_offer).
local function inbox_of(spec)
  return string.match(spec, '^%S*')
end

-- Ends the inbox's offer, if it has one and it is one the caller means: `spec` is
-- "<inbox> <base> ...", the bases of the offers the caller had sent and not seen ended
-- when it sent this call; an offer it sent later stands (this call reached Redis after
-- it). Jobs handed to it that the worker has not started (their token is not among
-- `returned`) go back to the head of their queue, Queued as before, in their order; no
-- attempt is counted. One cancelled meanwhile whose key is held for that unstarted claim
-- (let_go in _lifecycle.lua) lets the key go. Returns how many went back.
local function end_offer(spec, returned, now)
  local inbox = inbox_of(spec)
  local offer = redis.call('HGET', K.offers, inbox)
  if not offer then
    return 0
  end
  local base = parse_offer(offer)
  local meant = false
  for listed in string.gmatch(string.sub(spec, #inbox + 1), '%S+') do
    meant = meant or listed == base
  end
  if base and not meant then
    return 0
  end
  redis.call('HDEL', K.offers, inbox)
  redis.call('LREM', K.idle, 0, inbox)
  if not base then
    return 0
  end
  local given = redis.call('LRANGE', K.given .. base, 0, -1)
  redis.call('DEL', K.given .. base)
  local started = {}
  for _, token in ipairs(returned) do
    started[token] = true
  end
  local mark = base .. '.'
  local back = 0
  for i = #given, 1, -1 do
    local id = given[i]
    local key = job_key(id)
    local token = redis.pcall('HGET', key, 'token')
    if type(token) == 'string' and string.sub(token, 1, #mark) == mark and not started[token] then
      unclaim(key, id, now)
      back = back + 1
    elseif type(token) ~= 'string' then
      local held = redis.call('HGET', K.held_by, id)
      if held and string.sub(held, 1, #mark) == mark then
        local holder = string.match(held, '^(%S+) ')
        if not started[holder] then
          let_go(id, holder)
        end
      end
    end
  end
  return back
end
