-- Shared by every Conveyor script (prepended at build time).
-- Times are the Redis server's clock, in milliseconds, so that workers with skewed clocks agree.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Pending score: priority band first (9 = highest runs first), then arrival order.
local function pending_score(prio, seq)
  return (9 - prio) * 1e13 + seq
end
local function signal(key)
  redis.call('LPUSH', key, 1)
  redis.call('LTRIM', key, 0, 0)
end
