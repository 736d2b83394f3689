-- KEYS: record
-- ARGV: state, attempt, retain_ms ('' keeps the record's TTL as it is, '0' deletes the
--       record), then the fields to set, as name, value pairs
-- Writes a state transition unless the record refuses it (`TaskRecord::accepts` in core): a
-- completed record takes only `completed`, and an update from an earlier attempt than the
-- record's (a stale run whose lease was lost) is dropped. Returns 1 if written, 0 if refused.
local cur = redis.call('HMGET', KEYS[1], 'state', 'retried')
if cur[1] then
  if cur[1] == 'completed' and ARGV[1] ~= 'completed' then
    return 0
  end
  local attempt = tonumber(cur[2]) or 0
  if cur[1] == 'retry' then
    attempt = attempt - 1
  end
  if tonumber(ARGV[2]) < attempt then
    return 0
  end
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
if ARGV[3] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
