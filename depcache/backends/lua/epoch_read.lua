-- Redis Cluster miss: the epoch a computation starts from, below every invalidation still in
-- flight (see epoch_begin.lua). In-flight records older than their lifetime (an invalidator
-- that died between steps 1 and 4) are dropped.
-- KEYS[1] epoch, KEYS[2] in-flight epochs, ARGV[1] in-flight lifetime in milliseconds
-- Returns {epoch (0 when none was ever taken), 1 when it is held below an invalidation in
-- flight (calls must not share a computation on it), else 0}.
local epoch = tonumber(redis.call('GET', KEYS[1]) or '0')
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {epoch, 0}
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
return {epoch, held}
