-- KEYS: active
-- ARGV: lease_ms, task key prefix, then id, token pairs
-- Extends the leases the caller still holds.
local until_ms = now_ms() + tonumber(ARGV[1])
local n = 0
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local ok, token = pcall(redis.call, 'HGET', ARGV[2] .. id, 'token')
  if ok and token == ARGV[i + 1] then
    redis.call('ZADD', KEYS[1], 'XX', until_ms, id)
    n = n + 1
  end
end
return n
