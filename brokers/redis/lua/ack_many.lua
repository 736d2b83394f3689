-- KEYS: ids (hash of live task ids)
-- ARGV: base, then per stream: suffix, k, k entry ids (oldest first), the k task ids
-- Acks several deliveries of one queue: each is forgotten if the caller still holds it.
-- Returns 1 (acked) or 0 (lease lost) per delivery, in the order given. A few calls per
-- stream, not per task.
local base = ARGV[1]
local out = {}
local i = 2
while i <= #ARGV do
  local skey = base .. ':' .. ARGV[i]
  local k = tonumber(ARGV[i + 1])
  local e0, t0 = i + 2, i + 2 + k
  local done = {}
  local acked = redis.call('XACK', skey, GROUP, unpack(ARGV, e0, t0 - 1))
  for j = 0, k - 1 do
    -- Usually every one was held. If not, the ones XACK just acked are those still in the
    -- stream: a lost lease's entry was acked and deleted when its task was queued again.
    local eid = ARGV[e0 + j]
    if acked == k or #redis.call('XRANGE', skey, eid, eid) > 0 then
      out[#out + 1] = 1
      done[#done + 1] = ARGV[t0 + j]
    else
      out[#out + 1] = 0
    end
  end
  if acked > 0 then
    forget(skey, ARGV, e0, t0 - 1, ARGV[t0 - 1])
  end
  -- Per stream, so that a failure on a later stream leaves no acked id marked live.
  if #done > 0 then
    redis.call('HDEL', KEYS[1], unpack(done))
  end
  i = t0 + k
end
return out
