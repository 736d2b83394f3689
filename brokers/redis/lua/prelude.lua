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
-- Pending score: priority band first (9 = highest runs first), then arrival order.
local function pending_score(prio, seq)
  return (9 - clamp_prio(prio)) * 1e13 + seq
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
