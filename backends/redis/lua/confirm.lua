-- KEYS: record
-- The broker holds the task: its record, if still unconfirmed, no longer lapses.
if redis.call('HDEL', KEYS[1], 'unconfirmed') == 1 then
  redis.call('PERSIST', KEYS[1])
end
return 1
