-- KEYS: lock
-- ARGV: holder, ttl_ms
-- Takes the lock for the holder (or renews it if the holder has it); else returns the holder.
local h = redis.call('GET', KEYS[1])
if not h then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return { 1, false }
end
if h == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return { 1, false }
end
return { 0, h }
