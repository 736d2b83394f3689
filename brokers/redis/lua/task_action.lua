-- KEYS: streams (set), delayed, ids, archived, signal
-- ARGV: base, id, action ('run', 'archive' or 'delete'), pending ref ('SUFFIX|ENTRY-ID' where
--       the caller found the task pending, or ''), reason, max_archived, renewed envelope (for
--       an archived task that runs again), its priority, archived_at as the caller read it
-- An operator's action on one task, in one step: finds the task (scheduled, retry, archived,
-- or pending at the given entry), checks the action applies to its state, takes the task out
-- and runs, archives or deletes it. An archived task runs again only as the caller read it
-- (its archived_at), so that two operators running it at once run it once.
-- Returns { 'ok', state } or { 'missing' } or { 'state', state }.
local base, id, action = ARGV[1], ARGV[2], ARGV[3]
local retrying = base .. ':retrying'
expect_types({ KEYS[1], 'set', KEYS[2], 'zset', KEYS[3], 'hash', KEYS[4], 'zset', retrying, 'zset' })
local tkey = base .. ':t:' .. id
local state, msg, prio, lost, skey, eid
if redis.call('ZSCORE', KEYS[2], id) then
  state = redis.call('ZSCORE', retrying, id) and 'retry' or 'scheduled'
elseif redis.call('ZSCORE', KEYS[4], id) then
  local f = redis.pcall('HMGET', tkey, 'msg', 'archived_at')
  if f.err then f = {} end
  if action == 'run' and f[2] ~= ARGV[9] then
    return { 'missing' }
  end
  state, prio, lost = 'archived', clamp_prio(ARGV[8]), 0
elseif ARGV[4] ~= '' then
  skey, eid, prio = parse_ref(base, ARGV[4])
  local g = group_info(skey)
  local e = redis.call('XRANGE', skey, eid, eid)
  if g and e[1] and e[1][2][1] == id then
    local _
    _, msg, lost = entry_task(eid, e[1][2])
    if eid_after(eid, g['last-delivered-id']) then
      state = 'pending'
    else
      return { 'state', 'active' }
    end
  end
end
if not state then
  return { 'missing' }
end
local allowed = {
  run = { scheduled = true, retry = true, archived = true },
  archive = { pending = true, scheduled = true, retry = true },
  delete = { pending = true, scheduled = true, retry = true, archived = true },
}
if not allowed[action][state] then
  return { 'state', state }
end
-- Out of where it is, into where it goes.
if state == 'pending' then
  redis.call('XDEL', skey, eid)
  lag_changed(skey, group_info(skey))
elseif state == 'archived' then
  redis.call('ZREM', KEYS[4], id)
  redis.call('DEL', tkey)
  msg = ARGV[7]
else
  msg, prio, lost = take_delayed(base, id)
end
put(base, action, state, id, msg, prio, lost, ARGV[5])
if action == 'run' then
  signal(KEYS[5])
elseif action == 'archive' then
  trim_archive(KEYS[4], base, ARGV[6])
end
return { 'ok', state }
