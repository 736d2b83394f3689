-- KEYS: counter
-- ARGV: delta, ttl_ms ('' = unchanged)
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
