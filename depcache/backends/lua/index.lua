-- Redis Cluster store, step 2 of 3: add an entry to one dependency's index, unless that
-- dependency was invalidated after the computation started. Index and marker share a slot.
-- KEYS[1] index (zset), KEYS[2] invalidation marker
-- ARGV[1] entry key, ARGV[2] ttl in milliseconds ("0": none), ARGV[3] epoch ("" : no check)
-- Returns 1 when indexed, 0 when refused.
if ARGV[3] ~= '' then
  local mark = redis.call('GET', KEYS[2])
  if mark and tonumber(mark) > tonumber(ARGV[3]) then
    return 0
  end
end
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = '+inf'
if ttl > 0 then
  score = now + ttl
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], score, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] == 'inf' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIREAT', KEYS[1], last[2])
end
return 1
