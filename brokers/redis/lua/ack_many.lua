-- KEYS: active, leases (hash id -> token)
-- ARGV: task key prefix, then id, token pairs
-- Acks several tasks of one queue: each is forgotten if the caller still holds its lease.
-- Returns 1 (acked) or 0 (lease lost) per pair. A few calls per batch, not per task.
local ids = {}
for i = 2, #ARGV, 2 do
  ids[#ids + 1] = ARGV[i]
end
local held = redis.call('HMGET', KEYS[2], unpack(ids))
local out, done, keys = {}, {}, {}
for n, id in ipairs(ids) do
  if held[n] == ARGV[2 * n + 1] then
    out[n] = 1
    done[#done + 1] = id
    keys[#keys + 1] = ARGV[1] .. id
  else
    out[n] = 0
  end
end
if #done > 0 then
  redis.call('ZREM', KEYS[1], unpack(done))
  redis.call('HDEL', KEYS[2], unpack(done))
  redis.call('DEL', unpack(keys))
end
return out
