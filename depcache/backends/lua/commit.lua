-- Redis Cluster store, step 3 of 3: replace this call's pending placeholder by the value, or
-- drop it. If an invalidation deleted the placeholder meanwhile, nothing is written.
-- KEYS[1] entry
-- ARGV[1] placeholder written in step 1, ARGV[2] value ("" : drop), ARGV[3] ttl ms ("0": none)
-- Returns 1 when the value was stored.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 0
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
