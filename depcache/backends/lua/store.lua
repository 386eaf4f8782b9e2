-- Store one entry and index it under its dependencies, atomically.
-- KEYS[1]                 the entry
-- KEYS[2i], KEYS[2i+1]    index (zset) and invalidation marker of dependency i (same slot)
-- ARGV[1]                 entry bytes
-- ARGV[2]                 ttl in milliseconds, "0" for none
-- ARGV[3]                 epoch read before computing, "" to store unconditionally
-- Returns 1 when stored, 0 when refused because a dependency was invalidated after ARGV[3].
local ndeps = (#KEYS - 1) / 2
if ARGV[3] ~= '' then
  local epoch = tonumber(ARGV[3])
  for i = 1, ndeps do
    local mark = redis.call('GET', KEYS[2 * i + 1])
    if mark and tonumber(mark) > epoch then
      return 0
    end
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if ndeps == 0 then
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = '+inf'
if ttl > 0 then
  score = now + ttl
end
for i = 1, ndeps do
  local index = KEYS[2 * i]
  -- members whose entries have expired are dropped, so an index cannot grow without bound
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  redis.call('ZADD', index, score, KEYS[1])
  local size = redis.call('ZCARD', index)
  -- entries deleted or evicted leave their names behind: large indexes check two random
  -- members on every store, so dead names cannot pile up
  local pruned = false
  if size > 32 then
    for _, member in ipairs(redis.call('ZRANDMEMBER', index, 2)) do
      if member ~= KEYS[1] and redis.call('EXISTS', member) == 0 then
        pruned = redis.call('ZREM', index, member) == 1 or pruned
      end
    end
  end
  -- the index lives exactly as long as its longest-lived member
  if score == '+inf' then
    redis.call('PERSIST', index)
  elseif pruned then  -- the longest-lived member may be gone: recompute (rare)
    local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
    if last[2] == 'inf' then
      redis.call('PERSIST', index)
    else
      redis.call('PEXPIREAT', index, last[2])
    end
  else
    local expires = redis.call('PEXPIRETIME', index)
    -- -1: no expiry yet (a new index, or one holding a member without ttl: keep that)
    if (expires == -1 and size == 1) or (expires >= 0 and expires < score) then
      redis.call('PEXPIREAT', index, score)
    end
  end
end
return 1
