-- Store one entry and index it under its dependencies, atomically.
-- KEYS[1]                 the entry
-- KEYS[2i], KEYS[2i+1]    index (zset) and invalidation marker of dependency i (same slot)
-- ARGV[1]                 entry bytes
-- ARGV[2]                 ttl in milliseconds, "0" for none
-- ARGV[3]                 epoch read before computing, "" to store unconditionally
-- Returns 1 when stored, 0 when refused because a dependency was invalidated after ARGV[3].
-- Every redis.call costs the server about a microsecond on top of the command itself, so the
-- common path makes few: one MGET for all markers, then three or four calls per dependency.
local ndeps = (#KEYS - 1) / 2
if ARGV[3] ~= '' and ndeps > 0 then
  local epoch = tonumber(ARGV[3])
  for first = 1, ndeps, 500 do
    local marks = {}
    for i = first, math.min(first + 499, ndeps) do
      marks[#marks + 1] = KEYS[2 * i + 1]
    end
    for _, mark in ipairs(redis.call('MGET', unpack(marks))) do
      if mark and tonumber(mark) > epoch then
        return 0
      end
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
local spin = tonumber(t[2])  -- the microseconds: which indexes this store also sweeps
local score = '+inf'
if ttl > 0 then
  score = now + ttl
end
for i = 1, ndeps do
  local index = KEYS[2 * i]
  -- members whose entries have expired are dropped, so an index cannot grow without bound
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  -- -2: no index (yet, or all its members just expired), -1: no expiry (it holds a member
  -- without ttl), else when it expires (ms)
  local expires = redis.call('PEXPIRETIME', index)
  redis.call('ZADD', index, score, KEYS[1])
  -- the index lives exactly as long as its longest-lived member
  if score == '+inf' then
    if expires >= 0 then
      redis.call('PERSIST', index)
    end
  elseif expires == -2 or (expires >= 0 and expires < score) then
    redis.call('PEXPIREAT', index, score)
  end
  -- entries deleted or evicted leave their names behind: about one store in four checks four
  -- members of a large index, from a random rank, so dead names cannot pile up (by rank: on a
  -- large index ZRANGE costs the server a tenth of ZRANDMEMBER)
  local size = 0
  if (spin + i) % 4 == 0 then
    size = redis.call('ZCARD', index)
  end
  if size > 32 then
    local pruned = false
    local from = math.floor(spin / 4) % (size - 3)
    local members = redis.call('ZRANGE', index, from, from + 3)
    if redis.call('EXISTS', unpack(members)) < #members then  -- some are dead: which?
      for _, member in ipairs(members) do
        if redis.call('EXISTS', member) == 0 then
          pruned = redis.call('ZREM', index, member) == 1 or pruned
        end
      end
    end
    if pruned then  -- the longest-lived member may be gone: recompute (rare)
      local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
      if last[2] == 'inf' then
        redis.call('PERSIST', index)
      else
        redis.call('PEXPIREAT', index, last[2])
      end
    end
  end
end
return 1
