-- KEYS: pending, delayed, active, signal, paused, seq, tokens (unused), leases (hash id -> token)
-- ARGV: max (at most 1000), lease_ms, task key prefix, nonce (random, per call), and
--       optionally 'nowake' (the caller does not need the next due times)
-- One step: moves due delayed tasks to pending, returns tasks whose lease expired to pending
-- (counting the lost lease), then leases up to `max` pending tasks to the caller. Work per task
-- is one HMGET; everything else is one call per batch.
-- Returns { {id, payload, lost, id, payload, lost, ...}, next_delayed_ms, next_lease_ms, now_ms }
-- (flat: cheaper to build and to parse); every task's lease token is the nonce.
-- Every key is read or type-checked before the first write that could leave tasks half-moved
-- if a later call failed on a key of another type.
local now = now_ms()
local prefix = ARGV[3]
local function prio_of(id)
  local ok, p = pcall(redis.call, 'HGET', prefix .. id, 'prio')
  return ok and clamp_prio(p) or 0
end
-- Re-queues `ids` at the back of their priority band.
local function requeue(ids)
  local args = {}
  for _, id in ipairs(ids) do
    args[#args + 1] = pending_score(prio_of(id), redis.call('INCR', KEYS[6]))
    args[#args + 1] = id
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 500)
if #due > 0 or #expired > 0 then
  expect_types({ KEYS[1], 'zset', KEYS[6], 'string', KEYS[8], 'hash' })
end
if #due > 0 then
  redis.call('ZREM', KEYS[2], unpack(due))
  requeue(due)
end
if #expired > 0 then
  redis.call('ZREM', KEYS[3], unpack(expired))
  redis.call('HDEL', KEYS[8], unpack(expired))
  for _, id in ipairs(expired) do
    -- The lost lease must be counted, or a task that kills its worker could loop forever.
    if not pcall(redis.call, 'HINCRBY', prefix .. id, 'lost', 1) then
      pcall(redis.call, 'HSET', prefix .. id, 'lost', 1)
    end
  end
  requeue(expired)
end
local out = {}
if redis.call('EXISTS', KEYS[5]) == 0 then
  expect_types({ KEYS[8], 'hash' })
  local max = math.min(tonumber(ARGV[1]), 1000)
  local popped = redis.call('ZPOPMIN', KEYS[1], max)
  if #popped > 0 then
    -- The lease token is the call's random nonce: ids are unique within a queue, so (id,
    -- nonce) names one delivery, and it stays unique even if Redis loses its last writes.
    local token = ARGV[4]
    local until_ms = tostring(now + tonumber(ARGV[2]))
    local leases, tokens = {}, {}
    local n = 0
    for i = 1, #popped, 2 do
      local id = popped[i]
      local key = prefix .. id
      local f = redis.pcall('HMGET', key, 'msg', 'lost')
      if f.err then
        -- Not a hash (garbage written by something else): keep its bytes as the payload so the
        -- worker archives it with the reason, and make it a task hash again.
        local okv, raw = pcall(redis.call, 'GET', key)
        if not okv or not raw then raw = '' end
        redis.call('DEL', key)
        redis.call('HSET', key, 'msg', raw, 'prio', 0, 'lost', 0)
        f = { raw, '0' }
      end
      leases[i] = until_ms
      leases[i + 1] = id
      tokens[i] = id
      tokens[i + 1] = token
      out[n + 1] = id
      out[n + 2] = f[1] or ''
      out[n + 3] = f[2] or '0'
      n = n + 3
    end
    redis.call('ZADD', KEYS[3], unpack(leases))
    redis.call('HSET', KEYS[8], unpack(tokens))
    -- A full batch may have left tasks behind: wake another receiver for them.
    if #popped == 2 * max then
      signal(KEYS[4])
    end
  end
end
if ARGV[5] == 'nowake' then
  return { out, '', '', tostring(now) }
end
local nd = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local na = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return { out, nd[2] or '', na[2] or '', tostring(now) }
