-- KEYS: streams (set), delayed, ids, signal
-- ARGV: base, delivery, payload, delay_ms, priority
-- Replaces the task's envelope and schedules it again, if the caller still holds its delivery.
expect_types({ KEYS[1], 'set', KEYS[2], 'zset', ARGV[1] .. ':retrying', 'zset' })
local base = ARGV[1]
local prio = clamp_prio(ARGV[5])
local delay = tonumber(ARGV[4])
check_target(base, 's', prio)
local f = take(base, ARGV[2])
if not f then
  return 0
end
local id = f.tid
if delay > 0 then
  local tkey = base .. ':t:' .. id
  redis.call('DEL', tkey)
  redis.call('HSET', tkey, 'msg', ARGV[3], 'lost', 0, 'prio', prio)
  local at = now_ms() + delay
  redis.call('ZADD', KEYS[2], at, id)
  -- Mirrors the retrying tasks among the delayed ones, for the inspector's counts and lists.
  redis.call('ZADD', base .. ':retrying', at, id)
else
  add(KEYS[1], base, 's', prio, id, ARGV[3], 0)
end
-- Wakes a waiting receiver: to take the task, or to time its wait to the new due time.
signal(KEYS[4])
return 1
