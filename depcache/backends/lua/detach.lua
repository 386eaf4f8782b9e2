-- Redis Cluster invalidation, step 2 of 4: mark one dependency as invalidated at the epoch
-- taken in step 1, and detach its index. Index, marker and pending set share a slot.
-- KEYS[1] index (zset), KEYS[2] invalidation marker, KEYS[3] pending deletions (set)
-- ARGV[1] epoch, ARGV[2] marker lifetime in milliseconds
-- Returns every entry key whose deletion is not yet confirmed: this index's members, and
-- those detached by concurrent invalidations that have not finished deleting them. Step 3
-- deletes them all, so no invalidation returns while an entry it covers may still exist.
-- invalidations may reach this slot out of order: the marker keeps the highest epoch
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local epoch = math.max(current, tonumber(ARGV[1]))
redis.call('SET', KEYS[2], epoch, 'PX', ARGV[2])
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
for i = 1, #members, 1000 do
  redis.call('SADD', KEYS[3], unpack(members, i, math.min(i + 999, #members)))
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return redis.call('SMEMBERS', KEYS[3])
