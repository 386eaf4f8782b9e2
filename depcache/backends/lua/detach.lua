-- Redis Cluster invalidation, step 2 of 3: mark one dependency as invalidated at the epoch
-- taken in step 1, and detach its index. Index and marker share a slot.
-- KEYS[1] index (zset), KEYS[2] invalidation marker
-- ARGV[1] epoch, ARGV[2] marker lifetime in milliseconds
-- Returns the entry keys the index held (step 3 deletes them).
-- invalidations may reach this slot out of order: the marker keeps the highest epoch
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local epoch = math.max(current, tonumber(ARGV[1]))
redis.call('SET', KEYS[2], epoch, 'PX', ARGV[2])
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return members
