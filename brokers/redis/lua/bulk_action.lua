-- KEYS: streams (set), delayed, ids, archived, signal
-- ARGV: base, state ('pending', 'scheduled', 'retry', 'archived'), action ('run', 'archive',
--       'delete'; the caller checked it applies to the state), reason, max_archived, offset
-- An operator's action on every task of a state, at most 1000 per call (the caller calls
-- again while some moved), each task in one step with the action on it. Scheduled tasks are
-- the delayed ones not retrying: `offset` skips the retrying ones seen by the previous call.
-- Returns { moved, next offset (-1 when the state had no more tasks), the ids moved... }.
local base, state, action = ARGV[1], ARGV[2], ARGV[3]
local retrying = base .. ':retrying'
expect_types({ KEYS[1], 'set', KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'zset', retrying, 'zset' })
local moved, nxt, ids = 0, -1, {}
if state == 'retry' then
  for _, id in ipairs(redis.call('ZRANGE', retrying, 0, 999)) do
    if redis.call('ZSCORE', KEYS[2], id) then
      local msg, prio, lost = take_delayed(base, id)
      put(base, action, state, id, msg, prio, lost, ARGV[4])
      moved = moved + 1
      ids[#ids + 1] = id
    else
      redis.call('ZREM', retrying, id) -- a stale mirror
    end
  end
elseif state == 'scheduled' then
  local start = tonumber(ARGV[6]) or 0
  local batch = redis.call('ZRANGE', KEYS[2], start, start + 4999)
  local skipped = 0
  for _, id in ipairs(batch) do
    if redis.call('ZSCORE', retrying, id) then
      skipped = skipped + 1
    elseif moved < 1000 then
      local msg, prio, lost = take_delayed(base, id)
      put(base, action, state, id, msg, prio, lost, ARGV[4])
      moved = moved + 1
      ids[#ids + 1] = id
    else
      skipped = skipped + 1
    end
  end
  if #batch == 5000 or moved == 1000 then
    nxt = start + skipped
  end
elseif state == 'pending' then
  for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local skey = base .. ':' .. s
    local g = string.match(s, '^[sf]%d$') and group_info(skey)
    if g and moved < 1000 then
      local prio = clamp_prio(string.sub(s, 2))
      local from = '(' .. (g['last-delivered-id'] or '0-0')
      local entries = redis.call('XRANGE', skey, from, '+', 'COUNT', 1000 - moved)
      for _, e in ipairs(entries) do
        local id, msg, lost = entry_task(e[1], e[2])
        redis.call('XDEL', skey, e[1])
        put(base, action, state, id, msg, prio, lost, ARGV[4])
        moved = moved + 1
        ids[#ids + 1] = id
      end
      if #entries > 0 then
        lag_changed(skey, g)
      end
    end
  end
elseif state == 'archived' then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, 999)) do
    redis.call('ZREM', KEYS[4], id)
    redis.call('DEL', base .. ':t:' .. id)
    moved = moved + 1
    ids[#ids + 1] = id
  end
end
if moved > 0 and action == 'run' then
  signal(KEYS[5])
elseif moved > 0 and action == 'archive' then
  trim_archive(KEYS[4], base, ARGV[5], moved + 100)
end
if moved > 0 and nxt == -1 and state ~= 'scheduled' then
  nxt = 0
end
local out = { moved, nxt }
for _, id in ipairs(ids) do
  out[#out + 1] = id
end
return out
