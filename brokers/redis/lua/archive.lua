-- KEYS: archived, ids
-- ARGV: base, delivery, reason, max_archived
-- Moves the task to the archive with its reason, if the caller still holds its delivery; keeps
-- at most max_archived tasks (the oldest are deleted).
expect_types({ KEYS[1], 'zset', KEYS[2], 'hash' })
local base = ARGV[1]
local f = take(base, ARGV[2])
if not f then
  return 0
end
local id = f.tid
local now = now_ms()
local tkey = base .. ':t:' .. id
redis.call('HDEL', KEYS[2], id)
redis.call('DEL', tkey)
redis.call('HSET', tkey, 'msg', f.msg, 'reason', ARGV[3], 'archived_at', now)
redis.call('ZADD', KEYS[1], now, id)
-- Trims at most 100 per call, so that lowering the limit never blocks Redis.
local extra = math.min(redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4]), 100)
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[1], 0, extra - 1)) do
    redis.call('DEL', base .. ':t:' .. old)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
end
return 1
