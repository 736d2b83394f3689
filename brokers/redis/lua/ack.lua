-- KEYS: active, task
-- ARGV: id, token
-- Forgets a finished task, if the caller still holds its lease.
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
