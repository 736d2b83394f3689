-- Shared by every Conveyor script (prepended at build time).
-- Times are the Redis server's clock, in milliseconds, so that workers with skewed clocks agree.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A priority from stored data: 0 unless a number from 0 to 9 (NaN included).
local function clamp_prio(p)
  p = tonumber(p)
  if not p or p ~= p or p < 0 or p > 9 then return 0 end
  return math.floor(p)
end
-- Wakes a waiting receiver. The list only carries wake-ups: a key of another type is replaced.
local function signal(key)
  if not pcall(redis.call, 'LPUSH', key, 1) then
    redis.call('DEL', key)
    redis.call('LPUSH', key, 1)
  end
  redis.call('LTRIM', key, 0, 0)
end
-- Fails (before any write) if a key holds another type than expected, so that a script never
-- stops half-way with tasks removed from one structure and not yet added to the next.
local function expect_types(pairs)
  for i = 1, #pairs, 2 do
    local t = redis.call('TYPE', pairs[i])['ok']
    if t ~= 'none' and t ~= pairs[i + 1] then
      error('conveyor: key ' .. pairs[i] .. ' holds a ' .. t .. ', expected a ' .. pairs[i + 1])
    end
  end
end
-- Ready tasks live in streams, one per priority (`BASE:s:P`), with a consumer group `g`; tasks
-- handed back go to `BASE:f:P`, read before `BASE:s:P`. The set of stream suffixes in use
-- (`s0`, `f3`, ...) lets a claim find them. An entry is `{id: payload}`, plus `#lost: N` once
-- a lease was lost (the fewer fields, the cheaper a read). A delivery is named
-- `SUFFIX|ENTRY-ID`, unique per delivery.
local GROUP = 'g'
-- Fails (before any write) unless the stream a task is about to be added to is a stream or
-- absent, so that no script takes a task out of one place and then fails to put it back.
local function check_target(base, kind, prio)
  expect_types({ base .. ':' .. kind .. prio, 'stream' })
end
-- Appends a task to a stream of `kind` ('s' ready, 'f' handed back), creating it with its group.
-- The set is read first, so that a set key of another type fails before anything is written.
local function add(set, base, kind, prio, tid, msg, lost)
  local suffix = kind .. prio
  local skey = base .. ':' .. suffix
  -- Checked every time: a stream missing from the set would never be read. A stream created
  -- without its group (by something else) gets it from the next claim.
  if redis.call('SISMEMBER', set, suffix) == 0 then
    redis.call('SADD', set, suffix)
    if redis.call('EXISTS', skey) == 0 then
      redis.call('XGROUP', 'CREATE', skey, GROUP, '0', 'MKSTREAM')
    end
  end
  if lost > 0 then
    return redis.call('XADD', skey, '*', tid, msg, '#lost', lost)
  end
  return redis.call('XADD', skey, '*', tid, msg)
end
-- The task an entry carries: id, payload, lost leases. An entry written by something else
-- still gives a task (its payload fails to decode, and the worker archives it).
local function entry_task(eid, fl)
  local lost = 0
  for i = 3, #fl, 2 do
    if fl[i] == '#lost' then
      lost = tonumber(fl[i + 1]) or 0
    end
  end
  return fl[1] or ('entry:' .. eid), fl[2] or '', lost
end
-- The stream key, entry id and priority of a delivery `SUFFIX|ENTRY-ID`.
local function parse_ref(base, ref)
  local sep = string.find(ref, '|', 1, true)
  if not sep then
    error('conveyor: bad delivery reference ' .. ref)
  end
  local suffix = string.sub(ref, 1, sep - 1)
  return base .. ':' .. suffix, string.sub(ref, sep + 1), clamp_prio(string.sub(suffix, 2))
end
-- The fields of consumer group `g` of a stream (`pending`, `lag`, `last-delivered-id`, ...), or
-- nil if the stream is gone or has no such group.
local function group_info(skey)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', skey)
  if not ok then
    return nil
  end
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do
      f[g[i]] = g[i + 1]
    end
    if f['name'] == GROUP then
      return f
    end
  end
  return nil
end
-- Cuts a stream's head: every entry before the oldest one still pending was delivered and
-- settled, and with nothing pending, every entry delivered so far. Deleting entries one by one
-- (XDEL) costs Redis far more than this (XTRIM). A stream that is gone or has no group is left
-- as it is. Returns the oldest pending entry's id, if any.
local function trim_head(skey)
  local p = redis.pcall('XPENDING', skey, GROUP)
  if p.err then
    return nil
  end
  if p[1] > 0 then
    redis.call('XTRIM', skey, 'MINID', p[2])
    return p[2]
  end
  local g = group_info(skey)
  local last = g and g['last-delivered-id']
  if last and last ~= '0-0' then
    redis.call('XTRIM', skey, 'MINID', last)
    redis.call('XDEL', skey, last)
  end
  return nil
end
-- Takes a delivery out of its stream if the caller still holds it: XACK says whether it was
-- pending (a lost lease was re-queued under a new entry, so a stale holder gets 0). Returns
-- the task's id, payload, lost leases and priority, or nil.
local function take(base, ref)
  local skey, eid, prio = parse_ref(base, ref)
  -- XACK answers 0 for a stream or group that is gone, as for an entry no longer pending.
  if redis.call('XACK', skey, GROUP, eid) == 0 then
    return nil
  end
  local e = redis.call('XRANGE', skey, eid, eid)
  local tid, msg, lost = entry_task(eid, e[1] and e[1][2] or {})
  redis.call('XDEL', skey, eid)
  -- Acked entries kept behind this one (see `forget`) go now, not only at the next ack.
  trim_head(skey)
  return { tid = tid, msg = msg, lost = lost, prio = prio }
end
-- Removes acked entries (`args[from..to]`, the newest of them `newest`) from a stream: the
-- head is cut (`trim_head`), and entries acked after an older one still pending stay until it
-- is settled. That is bounded: once the oldest pending entry was published more than 100 ms
-- before these, they are deleted one by one instead.
local function forget(skey, args, from, to, newest)
  local oldest = trim_head(skey)
  if not oldest then
    return
  end
  local oldest_ms = tonumber(string.match(oldest, '^(%d+)')) or 0
  local newest_ms = tonumber(string.match(newest, '^(%d+)')) or 0
  if newest_ms - oldest_ms > 100 then
    redis.call('XDEL', skey, unpack(args, from, to))
  end
end
-- Whether stream entry id `a` comes after `b` (`MS-SEQ`; a missing `b` counts as `0-0`).
local function eid_after(a, b)
  local function parts(x)
    local ms, seq = string.match(x or '0-0', '^(%d+)-(%d+)$')
    return tonumber(ms) or 0, tonumber(seq) or 0
  end
  local am, as = parts(a)
  local bm, bs = parts(b)
  return am > bm or (am == bm and as > bs)
end
-- Keeps at most `max` tasks in the archive sorted set `archived` (the oldest go, with their
-- hashes); at most `cap` (default 100) per call, so that lowering the limit never blocks Redis.
local function trim_archive(archived, base, max, cap)
  local extra = math.min(redis.call('ZCARD', archived) - tonumber(max), cap or 100)
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', archived, 0, extra - 1)) do
      redis.call('DEL', base .. ':t:' .. old)
    end
    redis.call('ZREMRANGEBYRANK', archived, 0, extra - 1)
  end
end
