-- KEYS: record
-- ARGV: state, attempt, retain_ms ('' keeps the record's TTL as it is, '0' deletes the
--       record), a field to remove ('' none: the attempt that falls out of the history),
--       then the fields to set, as name, value pairs
-- Writes a state transition (which confirms a record created unconfirmed) unless the record refuses it (`TaskRecord::accepts` in core): a
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
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
if ARGV[4] ~= '' then
  redis.call('HDEL', KEYS[1], ARGV[4])
end
-- A worker runs the task, so it was queued: the record is confirmed, and no longer lapses
-- unless a finished state's retention says so.
local unconfirmed = redis.call('HDEL', KEYS[1], 'unconfirmed') == 1
if ARGV[3] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
elseif unconfirmed then
  redis.call('PERSIST', KEYS[1])
end
return 1
