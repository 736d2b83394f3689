-- KEYS: archived, ids
-- ARGV: base, delivery, reason, max_archived
-- Moves the task to the archive with its reason, if the caller still holds its delivery; keeps
-- at most max_archived tasks (the oldest are deleted).
expect_types({ KEYS[1], 'zset', KEYS[2], 'hash' })
local base = ARGV[1]
local f = take(base, ARGV[2])
if not f then
  return 0
end
local id = f.tid
local now = now_ms()
local tkey = base .. ':t:' .. id
redis.call('HDEL', KEYS[2], id)
redis.call('DEL', tkey)
redis.call('HSET', tkey, 'msg', f.msg, 'reason', ARGV[3], 'archived_at', now)
redis.call('ZADD', KEYS[1], now, id)
trim_archive(KEYS[1], base, ARGV[4])
return 1
