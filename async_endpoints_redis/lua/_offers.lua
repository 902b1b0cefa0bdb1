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

-- A caller names its inbox as "<inbox> <n>": n numbers the newest offer it had sent when
-- it sent this call (a worker numbers its offers in the order it sends them, and the
-- number is in each offer's token base, "<mark><n in hex>x<random hex>").
local function inbox_of(spec)
  return string.match(spec, '^%S*')
end

local function number_of(base)
  return tonumber(string.match(base, '(%x+)x%x+$') or '', 16) or 0
end

-- The highest n the inbox's calls were sent with ({p}:ended:<inbox>, kept an hour after
-- it last rose), raised to the caller's: no offer numbered n or lower is made after this.
local function offers_ended(spec)
  local inbox, n = string.match(spec, '^(%S*) ?(%d*)$')
  n = tonumber(n) or 0
  if inbox == '' or n == 0 then
    return inbox, 0  -- it never offered: nothing to end or to refuse
  end
  local ended = tonumber(redis.call('GET', K.ended .. inbox) or '0')
  if n > ended then
    redis.call('SET', K.ended .. inbox, n, 'PX', 3600000)
    ended = n
  end
  return inbox, ended
end

-- Ends the inbox's offer, if it has one numbered no higher than the caller's n (`spec`,
-- see inbox_of): an offer the worker sent after this call stands (this call reached Redis
-- after it, held up on its way or run after its caller gave up). Jobs handed to it that
-- the worker has not started (their token is not among `returned`) go back to the head of
-- their queue, Queued as before, in their order; no attempt is counted. One cancelled
-- meanwhile whose key is held for that unstarted claim (let_go in _lifecycle.lua) lets
-- the key go. Returns how many went back, and the inbox's highest n (see offers_ended).
local function end_offer(spec, returned, now)
  local inbox, ended = offers_ended(spec)
  local offer = redis.call('HGET', K.offers, inbox)
  if not offer then
    return 0, ended
  end
  local base = parse_offer(offer)
  if base and number_of(base) > ended then
    return 0, ended
  end
  redis.call('HDEL', K.offers, inbox)
  redis.call('LREM', K.idle, 0, inbox)
  if not base then
    return 0, ended
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
  return back, ended
end
