-- Redis Cluster miss: the epoch a computation starts from, below every invalidation still in
-- flight (see epoch_begin.lua). In-flight records older than their lifetime (an invalidator
-- that died between its steps) are dropped. A missing epoch starts from the server's clock; a
-- missing floor is set to the epoch (every older entry is void: see lookup.lua).
-- KEYS[1] epoch, KEYS[2] in-flight epochs, KEYS[3] floor, KEYS[4] record of the masters
-- ARGV[1] in-flight lifetime in milliseconds
-- Returns {epoch to compute from, 1 when it is held below an invalidation in flight (calls must
-- not share a computation on it) else 0, the current epoch}.
-- include: _epoch.lua
local current = current_epoch(KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], string.format('%d', current))
  redis.call('SET', KEYS[4], '?')
end
local epoch = current
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {epoch, 0, epoch}
end
local held = 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lifetime = tonumber(ARGV[1])
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local sep = string.find(member, ':', 1, true)
  local first = tonumber(string.sub(member, 1, sep - 1))
  local started = tonumber(string.sub(member, sep + 1))
  if now - started > lifetime then
    redis.call('ZREM', KEYS[2], member)
  elseif first - 1 < epoch then
    epoch = first - 1
    held = 1
  end
end
return {epoch, held, current}
