-- KEYS: record
-- ARGV: name, queue, state, retried, max_retry, created_at_ms, updated_at_ms, unconfirmed_ttl_ms
-- Creates a task record, unconfirmed (it lapses unless `confirm.lua` or an update confirms
-- it), unless a confirmed one exists: an unconfirmed one, of an enqueue that failed, is
-- replaced. Returns 1 if created, 0 if a confirmed record exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  if not redis.call('HGET', KEYS[1], 'unconfirmed') then
    return 0
  end
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'queue', ARGV[2], 'state', ARGV[3], 'retried', ARGV[4],
  'max_retry', ARGV[5], 'created_at', ARGV[6], 'updated_at', ARGV[7], 'unconfirmed', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[8])
return 1
