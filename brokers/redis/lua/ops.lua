-- Shared by the operator's scripts (task_action, bulk_action): where a task taken out goes.
-- KEYS as theirs: streams (set), delayed, ids, archived, signal.
-- `action` ('run', 'archive', 'delete') on a task already taken out of `state`. A task that
-- runs from the archive is live again (its id is marked in `ids`).
local function put(base, action, state, id, msg, prio, lost, reason)
  if action == 'run' then
    if state == 'archived' then
      redis.call('HSET', KEYS[3], id, 1)
    end
    add(KEYS[1], base, 's', prio, id, msg, lost)
  elseif action == 'archive' then
    local tkey = base .. ':t:' .. id
    redis.call('HDEL', KEYS[3], id)
    redis.call('DEL', tkey)
    redis.call('HSET', tkey, 'msg', msg, 'reason', reason, 'archived_at', now_ms())
    redis.call('ZADD', KEYS[4], now_ms(), id)
  elseif state ~= 'archived' then
    redis.call('HDEL', KEYS[3], id)
  end
end
-- Takes a scheduled or retry task out; its payload, priority and lost leases.
local function take_delayed(base, id)
  local tkey = base .. ':t:' .. id
  local f = redis.pcall('HMGET', tkey, 'msg', 'prio', 'lost')
  if f.err then f = {} end
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', base .. ':retrying', id)
  redis.call('DEL', tkey)
  return f[1] or '', clamp_prio(f[2]), tonumber(f[3]) or 0
end

-- After deleting entries of stream `skey` that its group had not delivered yet: Redis takes
-- the deletion of a stream's first entries for a trim, and goes on counting them in the
-- group's lag (the pending count). Forgetting how many entries the group read makes Redis
-- count the lag again from the stream.
local function lag_changed(skey, g)
  redis.call('XGROUP', 'SETID', skey, GROUP, g['last-delivered-id'], 'ENTRIESREAD', -1)
end
