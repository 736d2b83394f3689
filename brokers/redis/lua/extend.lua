-- KEYS: streams (unused: it routes the call to the queue's slot)
-- ARGV: base, lease_ms, then deliveries
-- Extends the leases the caller still holds: XCLAIM to the same consumer resets their idle
-- time. Returns 1 (extended) or 0 (lost) per delivery, in the order given: an entry no longer
-- pending was settled, or its lost lease was re-queued as a new entry that another receiver
-- may be running.
local base = ARGV[1]
local consumer = 'l' .. ARGV[2]
local by_stream = {}
local order = {}
for i = 3, #ARGV do
  local skey, eid = parse_ref(base, ARGV[i])
  if not by_stream[skey] then
    by_stream[skey] = {}
    order[#order + 1] = skey
  end
  table.insert(by_stream[skey], eid)
end
local held = {}
for _, skey in ipairs(order) do
  local args = { skey, GROUP, consumer, 0 }
  for _, eid in ipairs(by_stream[skey]) do
    args[#args + 1] = eid
  end
  args[#args + 1] = 'JUSTID'
  -- A stream that is gone or was replaced fails on its own (its deliveries are lost), without
  -- stopping the others.
  local r = redis.pcall('XCLAIM', unpack(args))
  if not r.err then
    for _, eid in ipairs(r) do
      held[skey .. '|' .. eid] = true
    end
  end
end
local out = {}
for i = 3, #ARGV do
  local skey, eid = parse_ref(base, ARGV[i])
  out[#out + 1] = held[skey .. '|' .. eid] and 1 or 0
end
return out
