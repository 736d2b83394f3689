-- KEYS: active, archived, task, leases
-- ARGV: id, token, reason, max_archived, task key prefix
-- Moves the task to the archive with its reason, if the caller still holds its lease; keeps
-- at most max_archived tasks (the oldest are deleted).
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
  return 0
end
local now = now_ms()
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[3], 'reason', ARGV[3], 'archived_at', now)
redis.call('ZADD', KEYS[2], now, ARGV[1])
-- Trims at most 100 per call, so that lowering the limit never blocks Redis.
local extra = math.min(redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4]), 100)
if extra > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do
    redis.call('DEL', ARGV[5] .. old)
  end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, extra - 1)
end
return 1
