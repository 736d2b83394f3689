-- KEYS: pending, delayed, active, signal, paused, seq, tokens
-- ARGV: max, lease_ms, task key prefix
-- One step: moves due delayed tasks to pending, returns tasks whose lease expired to pending
-- (counting the lost lease), then leases up to `max` pending tasks to the caller.
-- Returns { {id, payload, lost, token}..., next_delayed_ms, next_lease_ms }.
local now = now_ms()
local prefix = ARGV[3]
local function prio_of(id)
  local ok, p = pcall(redis.call, 'HGET', prefix .. id, 'prio')
  return (ok and tonumber(p)) or 0
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZADD', KEYS[1], pending_score(prio_of(id), redis.call('INCR', KEYS[6])), id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)) do
  redis.call('ZREM', KEYS[3], id)
  pcall(redis.call, 'HINCRBY', prefix .. id, 'lost', 1)
  pcall(redis.call, 'HDEL', prefix .. id, 'token')
  redis.call('ZADD', KEYS[1], pending_score(prio_of(id), redis.call('INCR', KEYS[6])), id)
end
local out = {}
if redis.call('EXISTS', KEYS[5]) == 0 then
  local lease = tonumber(ARGV[2])
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
    redis.call('ZREM', KEYS[1], id)
    local key = prefix .. id
    local ok, f = pcall(redis.call, 'HMGET', key, 'msg', 'lost')
    if not ok then
      -- Not a hash (garbage written by something else): keep its bytes as the payload so the
      -- worker archives it with the reason, and make it a task hash again.
      local okv, raw = pcall(redis.call, 'GET', key)
      if not okv or not raw then raw = '' end
      redis.call('DEL', key)
      redis.call('HSET', key, 'msg', raw, 'prio', 0, 'lost', 0)
      f = { raw, '0' }
    end
    local token = tostring(redis.call('INCR', KEYS[7]))
    redis.call('HSET', key, 'token', token)
    redis.call('ZADD', KEYS[3], now + lease, id)
    out[#out + 1] = { id, f[1] or '', f[2] or '0', token }
  end
  if redis.call('ZCARD', KEYS[1]) > 0 then
    signal(KEYS[4])
  end
end
local nd = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local na = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return { out, nd[2] or '', na[2] or '', tostring(now) }
