-- KEYS: pending, delayed, seq, signal, task, active, archived
-- ARGV: id, payload, priority, delay_ms
-- Stores the task and queues it (or schedules it). Returns 0 if a task with this id is live
-- (pending, scheduled or running); an archived or orphaned one with the same id is replaced.
-- The reads come first, so a key of another type fails the script before anything is written
-- (the sequence number, which a failure may have bumped, only orders tasks).
local id = ARGV[1]
if redis.call('ZSCORE', KEYS[1], id) or redis.call('ZSCORE', KEYS[2], id) or redis.call('ZSCORE', KEYS[6], id) then
  return 0
end
local seq = redis.call('INCR', KEYS[3])
redis.call('ZREM', KEYS[7], id)
redis.call('DEL', KEYS[5])
local prio = clamp_prio(ARGV[3])
redis.call('HSET', KEYS[5], 'msg', ARGV[2], 'prio', prio, 'lost', 0)
local delay = tonumber(ARGV[4])
if delay > 0 then
  redis.call('ZADD', KEYS[2], now_ms() + delay, id)
else
  redis.call('ZADD', KEYS[1], pending_score(prio, seq), id)
end
-- Wakes a waiting receiver: to take the task, or to time its wait to the new due time.
signal(KEYS[4])
return 1
