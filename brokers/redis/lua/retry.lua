-- KEYS: streams (set), delayed, ids, signal
-- ARGV: base, delivery, id, payload, delay_ms, priority
-- Replaces the task's envelope and schedules it again, if the caller still holds its delivery.
expect_types({ KEYS[2], 'zset' })
local base, id = ARGV[1], ARGV[3]
local prio = clamp_prio(ARGV[6])
local delay = tonumber(ARGV[5])
check_target(base, 's', prio)
if not take(base, ARGV[2]) then
  return 0
end
if delay > 0 then
  local tkey = base .. ':t:' .. id
  redis.call('DEL', tkey)
  redis.call('HSET', tkey, 'msg', ARGV[4], 'lost', 0, 'prio', prio)
  redis.call('ZADD', KEYS[2], now_ms() + delay, id)
else
  add(KEYS[1], base, 's', prio, id, ARGV[4], 0)
end
-- Wakes a waiting receiver: to take the task, or to time its wait to the new due time.
signal(KEYS[4])
return 1
