-- Redis Cluster invalidation, step 1 of 3: take a new epoch and record it as in flight until
-- step 3, so that a miss reading the epoch meanwhile (epoch_read.lua) gets one below it: its
-- computation may still see (nested) entries whose markers this invalidation has not raised
-- yet, and the markers of step 2 then void its result. Epoch and in-flight set share a slot
-- ({P:epoch} tag).
-- KEYS[1] epoch, KEYS[2] in-flight epochs (zset: score epoch, member "epoch:started ms")
-- ARGV[1] how long an unfinished invalidation (a crashed invalidator) stays in flight, ms
-- Returns {epoch, member}.
-- include: _epoch.lua
current_epoch(KEYS[1])
local epoch = redis.call('INCR', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = string.format('%d:%d', epoch, now)
redis.call('ZADD', KEYS[2], epoch, member)
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return {epoch, member}
