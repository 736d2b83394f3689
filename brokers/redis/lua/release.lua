-- KEYS: streams (set), signal
-- ARGV: base, delivery, id
-- Hands an unfinished task back, first in line within its priority, without using an attempt.
local base = ARGV[1]
local f = take(base, ARGV[2])
if not f then
  return 0
end
add(KEYS[1], base, 'f', f.prio, ARGV[3], f.msg, f.lost)
signal(KEYS[2])
return 1
