-- KEYS: streams (set), delayed, ids, signal, paused, recovery mark
-- ARGV: max (at most 1000), lease_ms, base, 'nowake' (the caller does not need the next due
--       time) or 'wake', and optionally `prep`: a count
-- One step: moves due delayed tasks to their streams; at most every 200 ms, re-queues tasks
-- whose lease expired (their worker died), counting the lost lease, and drops streams left
-- empty; then reads up to `max` tasks for the caller with XREADGROUP (priority 9 first,
-- handed-back tasks first in each), which leases them: they stay in the group's pending list,
-- under the consumer `l<lease_ms>`, until acked, and their idle time there is the lease.
-- With `prep`, it reads nothing: the caller reads the queue's only stream itself, with a plain
-- XREADGROUP of up to `prep` tasks pipelined right behind (Redis does that far cheaper than a
-- read from a script, which converts every entry to Lua and back).
-- Returns { {suffix, n, then n times: entry id, task id, payload}... (flat), next_delayed_ms ('' if none),
-- now_ms, the queue's streams in reading order, 1 if the queue is paused (else 0) }.
local now = now_ms()
local max = math.min(tonumber(ARGV[1]), 1000)
local lease = tonumber(ARGV[2])
local base = ARGV[3]
local consumer = 'l' .. ARGV[2]
-- Reads first: keys of another type fail the script here, before any write.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 500)
-- The streams in use; a listed stream that is gone is dropped from the list, and a key of
-- another type fails the script (before any write that matters). A member that is not a
-- stream suffix (`s0`..`f9`; written by something else) is left alone and never read.
local function streams()
  local live = {}
  for _, s in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local skey = base .. ':' .. s
    local t = string.match(s, '^[sf]%d$') and redis.call('TYPE', skey)['ok']
    if not t then
      -- Not ours.
    elseif t == 'stream' then
      live[#live + 1] = s
    elseif t == 'none' then
      redis.call('SREM', KEYS[1], s)
    else
      error('conveyor: key ' .. skey .. ' holds a ' .. t .. ', expected a stream')
    end
  end
  return live
end
local suffixes = streams()
if #due > 0 then
  -- One task at a time, each removed from the delayed set as it is queued: a failure half-way
  -- leaves the rest scheduled, none of them twice.
  for _, tid in ipairs(due) do
    local tkey = base .. ':t:' .. tid
    local f = redis.pcall('HMGET', tkey, 'msg', 'prio', 'lost')
    if f.err then
      -- Not a hash (garbage written by something else): its bytes become the payload, which
      -- the worker archives as undecodable.
      local ok, raw = pcall(redis.call, 'GET', tkey)
      f = { ok and raw or '', 0, 0 }
    end
    local prio = clamp_prio(f[2])
    check_target(base, 's', prio)
    add(KEYS[1], base, 's', prio, tid, f[1] or '', tonumber(f[3]) or 0)
    redis.call('DEL', tkey)
    redis.call('ZREM', KEYS[2], tid)
    redis.call('ZREM', base .. ':retrying', tid)
  end
  suffixes = streams()
end
-- Lost leases: entries idle in the pending list longer than their consumer's lease.
local recover = redis.call('SET', KEYS[6], 1, 'NX', 'PX', 200)
if not recover and redis.call('PTTL', KEYS[6]) == -1 then
  -- A mark that never expires (written by something else) would turn recovery off for good.
  redis.call('DEL', KEYS[6])
  recover = redis.call('SET', KEYS[6], 1, 'NX', 'PX', 200)
end
if recover then
  for _, s in ipairs(suffixes) do
    local skey = base .. ':' .. s
    local consumers = redis.pcall('XINFO', 'CONSUMERS', skey, GROUP)
    -- A stream without its group (replaced by something else) has no leases to recover; the
    -- read below gives it its group back.
    if consumers.err then consumers = {} end
    for _, c in ipairs(consumers) do
      local info = {}
      for i = 1, #c, 2 do
        info[c[i]] = c[i + 1]
      end
      -- The consumer's name carries its lease in ms (`l30000`), passed on as written.
      local clease = string.sub(info['name'], 2)
      if info['pending'] > 0 and string.match(clease, '^%d+$') then
        check_target(base, 's', string.sub(s, 2))
        local stale = redis.call('XPENDING', skey, GROUP, 'IDLE', clease, '-', '+', 100, info['name'])
        for _, p in ipairs(stale) do
          local eid = p[1]
          local e = redis.call('XRANGE', skey, eid, eid)
          redis.call('XACK', skey, GROUP, eid)
          redis.call('XDEL', skey, eid)
          if e[1] then
            -- The lost lease must be counted, or a task that kills its worker could loop forever.
            local tid, msg, lost = entry_task(eid, e[1][2])
            add(KEYS[1], base, 's', string.sub(s, 2), tid, msg, lost + 1)
          end
        end
      end
    end
  end
  -- Streams left empty go (the next task for them brings them back), so that a queue whose
  -- tasks all sit in one stream again can be read without a script.
  for _, s in ipairs(streams()) do
    local skey = base .. ':' .. s
    trim_head(skey)
    -- Pending entries are never trimmed, so an empty stream has none.
    if redis.call('XLEN', skey) == 0 then
      redis.call('DEL', skey)
      redis.call('SREM', KEYS[1], s)
    end
  end
  suffixes = streams()
end
-- Priority 9 first; within a priority, handed-back tasks ('f') before the others ('s').
table.sort(suffixes, function(a, b)
  local pa, pb = tonumber(string.sub(a, 2)), tonumber(string.sub(b, 2))
  if pa ~= pb then return pa > pb end
  return a < b
end)
local paused = redis.call('EXISTS', KEYS[5]) == 1
local prep = tonumber(ARGV[5])
local out, got = {}, 0
if prep then
  -- More waiting than the caller's read takes: wake another receiver for them.
  if not paused and #suffixes == 1 then
    local skey = base .. ':' .. suffixes[1]
    local g = group_info(skey)
    if not g then
      -- The stream was replaced by something else: give it its group back, from the start,
      -- for the read that follows.
      redis.call('XGROUP', 'CREATE', skey, GROUP, '0')
    else
      -- Entries not delivered yet: the group's lag. Redis cannot tell it after some
      -- deletions (nil); then the length less the pending entries, which also counts acked
      -- entries still in the stream (a wake-up too many, never one too few).
      local waiting = g['lag']
      if type(waiting) ~= 'number' then
        waiting = redis.call('XLEN', skey) - g['pending']
      end
      if waiting > prep then
        signal(KEYS[4])
      end
    end
  end
elseif not paused then
  for _, s in ipairs(suffixes) do
    if got >= max then break end
    local skey = base .. ':' .. s
    local r = redis.pcall('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', max - got, 'STREAMS', skey, '>')
    if type(r) == 'table' and r.err then
      if not string.find(r.err, 'NOGROUP', 1, true) then
        -- Tasks read from earlier streams are leased already: hand them over, not the error.
        if got > 0 then break end
        return redis.error_reply(r.err)
      end
      -- The stream was replaced by something else: give it its group back, from the start.
      redis.call('XGROUP', 'CREATE', skey, GROUP, '0')
      r = redis.call('XREADGROUP', 'GROUP', GROUP, consumer, 'COUNT', max - got, 'STREAMS', skey, '>')
    end
    if r then
      -- Per stream: its suffix, how many entries, then per entry its id, task id and payload;
      -- an entry carrying lost leases has its id sent as `ID#LOST`.
      local entries = r[1][2]
      out[#out + 1] = s
      out[#out + 1] = #entries
      for _, e in ipairs(entries) do
        local tid, msg, lost = entry_task(e[1], e[2])
        if lost > 0 then
          out[#out + 1] = e[1] .. '#' .. lost
        else
          out[#out + 1] = e[1]
        end
        out[#out + 1] = tid
        out[#out + 1] = msg
      end
      got = got + #entries
    end
  end
  -- A full batch may have left tasks behind: wake another receiver for them.
  if got == max then
    signal(KEYS[4])
  end
end
local p = paused and 1 or 0
if ARGV[4] == 'nowake' then
  return { out, '', tostring(now), suffixes, p }
end
local nd = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return { out, nd[2] or '', tostring(now), suffixes, p }
