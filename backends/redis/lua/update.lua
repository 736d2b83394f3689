-- KEYS: record
-- ARGV: name, queue, max_retry, created_at_ms, state, retried, updated_at_ms, error, result, retain_ms
-- Records a state transition (creating the record if missing). error/result: '' = unchanged.
-- retain_ms: '' = keep forever (non-terminal), '0' = delete now, N = expire after N ms.
if ARGV[10] == '0' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSETNX', KEYS[1], 'name', ARGV[1])
redis.call('HSETNX', KEYS[1], 'queue', ARGV[2])
redis.call('HSETNX', KEYS[1], 'max_retry', ARGV[3])
redis.call('HSETNX', KEYS[1], 'created_at', ARGV[4])
redis.call('HSET', KEYS[1], 'state', ARGV[5], 'retried', ARGV[6], 'updated_at', ARGV[7])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[9]) end
if ARGV[10] == '' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[10])
end
return 1
