-- KEYS: streams (set), signal
-- ARGV: base, delivery
-- Hands an unfinished task back, first in line within its priority, without using an attempt.
expect_types({ KEYS[1], 'set' })
local base = ARGV[1]
local _, _, prio = parse_ref(base, ARGV[2])
check_target(base, 'f', prio)
local f = take(base, ARGV[2])
if not f then
  return 0
end
add(KEYS[1], base, 'f', f.prio, f.tid, f.msg, f.lost)
signal(KEYS[2])
return 1
