-- KEYS: pending, delayed, seq, signal, task
-- ARGV: id, payload, priority, delay_ms
-- Stores the task and queues it (or schedules it). A task id already held is left alone.
if redis.call('EXISTS', KEYS[5]) == 1 then
  return 0
end
local prio = tonumber(ARGV[3])
redis.call('HSET', KEYS[5], 'msg', ARGV[2], 'prio', prio, 'lost', 0)
local delay = tonumber(ARGV[4])
if delay > 0 then
  redis.call('ZADD', KEYS[2], now_ms() + delay, ARGV[1])
else
  redis.call('ZADD', KEYS[1], pending_score(prio, redis.call('INCR', KEYS[3])), ARGV[1])
end
-- Wakes a waiting receiver: to take the task, or to time its wait to the new due time.
signal(KEYS[4])
return 1
