-- KEYS: streams (set), delayed, ids (hash of live task ids), signal, archived
-- ARGV: base, id, payload, priority, delay_ms
-- Stores the task in its priority's stream (or schedules it). Returns 0 if a task with this id
-- is live (ready, scheduled or running); an archived one with the same id is replaced.
-- Reads come first, then the writes that fail on a key of another type (the task stored), then
-- the ones that cannot: a broken key fails the script before an archived task with this id is
-- dropped or the id is marked live.
local base, id = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[3], id) == 1 then
  return 0
end
local archived = redis.call('ZSCORE', KEYS[5], id)
local tkey = base .. ':t:' .. id
local prio = clamp_prio(ARGV[4])
local delay = tonumber(ARGV[5])
if delay > 0 then
  redis.call('ZADD', KEYS[2], now_ms() + delay, id)
else
  add(KEYS[1], base, 's', prio, id, ARGV[3], 0)
end
if archived then
  redis.call('ZREM', KEYS[5], id)
  redis.call('DEL', tkey)
end
if delay > 0 then
  redis.call('HSET', tkey, 'msg', ARGV[3], 'prio', prio, 'lost', 0)
end
redis.call('HSET', KEYS[3], id, 1)
-- Wakes a waiting receiver: to take the task, or to time its wait to the new due time.
signal(KEYS[4])
return 1
