-- KEYS: active
-- ARGV: task key prefix, then id, token pairs
-- Acks several tasks of one queue: each is forgotten if the caller still holds its lease.
-- Returns 1 (acked) or 0 (lease lost) per pair.
local out = {}
for i = 2, #ARGV, 2 do
  local id, key = ARGV[i], ARGV[1] .. ARGV[i]
  local ok, token = pcall(redis.call, 'HGET', key, 'token')
  if ok and token == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', key)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
