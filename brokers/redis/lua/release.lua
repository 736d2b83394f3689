-- KEYS: active, pending, signal, task, front, leases
-- ARGV: id, token
-- Hands an unfinished task back, first in line, without using an attempt.
if redis.call('HGET', KEYS[6], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
local ok, p = pcall(redis.call, 'HGET', KEYS[4], 'prio')
local prio = ok and clamp_prio(p) or 0
redis.call('ZADD', KEYS[2], pending_score(prio, -redis.call('INCR', KEYS[5])), ARGV[1])
signal(KEYS[3])
return 1
