-- KEYS: streams (unused: it routes the call to the queue's slot)
-- ARGV: base, lease_ms, then deliveries
-- Extends the leases the caller still holds: XCLAIM to the same consumer resets their idle
-- time (deliveries no longer pending are skipped). Returns how many were extended.
local base = ARGV[1]
local consumer = 'l' .. ARGV[2]
local by_stream = {}
for i = 3, #ARGV do
  local skey, eid = parse_ref(base, ARGV[i])
  by_stream[skey] = by_stream[skey] or {}
  table.insert(by_stream[skey], eid)
end
local n = 0
for skey, eids in pairs(by_stream) do
  local args = { skey, GROUP, consumer, 0 }
  for _, eid in ipairs(eids) do
    args[#args + 1] = eid
  end
  args[#args + 1] = 'JUSTID'
  -- A stream that is gone or was replaced fails on its own, without stopping the others.
  local r = redis.pcall('XCLAIM', unpack(args))
  if not r.err then
    n = n + #r
  end
end
return n
