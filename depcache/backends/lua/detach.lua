-- Redis Cluster invalidation, step 2 of 3: raise one dependency's marker to the epoch taken in
-- step 1 (entries computed before it are void from now on: hits check the marker) and detach
-- its index.
-- KEYS[1] the index, ARGV[1] the epoch, ARGV[2] how long the marker outlives the entries (ms)
-- Returns the entries the index named, without the entry prefix (step 3 deletes them).
-- invalidations may reach this slot out of order: the marker keeps the highest epoch
local mark = redis.call('ZSCORE', KEYS[1], '')
local epoch = tonumber(ARGV[1])
if mark and -tonumber(mark) > epoch then
  epoch = -tonumber(mark)
end
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(0', '+inf')
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[1], string.format('%d', -epoch), '')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return members
