-- KEYS: active, leases
-- ARGV: lease_ms, then id, token pairs
-- Extends the leases the caller still holds.
local until_ms = now_ms() + tonumber(ARGV[1])
local ids = {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
local held = redis.call('HMGET', KEYS[2], unpack(ids))
local n = 0
for k, id in ipairs(ids) do
  if held[k] == ARGV[2 * k + 1] then
    redis.call('ZADD', KEYS[1], 'XX', until_ms, id)
    n = n + 1
  end
end
return n
