-- KEYS: record
-- ARGV: name, queue, state, retried, max_retry, created_at_ms, updated_at_ms
-- Creates a task record unless one exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'queue', ARGV[2], 'state', ARGV[3], 'retried', ARGV[4],
  'max_retry', ARGV[5], 'created_at', ARGV[6], 'updated_at', ARGV[7])
return 1
