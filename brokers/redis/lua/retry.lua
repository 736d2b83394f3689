-- KEYS: active, delayed, pending, seq, signal, task, leases
-- ARGV: id, token, payload, delay_ms, priority
-- Replaces the task's envelope and schedules it again, if the caller still holds its lease.
if redis.call('HGET', KEYS[7], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
local prio = tonumber(ARGV[5])
redis.call('HSET', KEYS[6], 'msg', ARGV[3], 'lost', 0, 'prio', prio)
local delay = tonumber(ARGV[4])
if delay > 0 then
  redis.call('ZADD', KEYS[2], now_ms() + delay, ARGV[1])
else
  redis.call('ZADD', KEYS[3], pending_score(prio, redis.call('INCR', KEYS[4])), ARGV[1])
end
-- Wakes a waiting receiver: to take the task, or to time its wait to the new due time.
signal(KEYS[5])
return 1
