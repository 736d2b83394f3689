-- KEYS: group
-- ARGV: index, value, ttl_ms
-- First write wins per member index; returns the number of distinct members.
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HLEN', KEYS[1])
