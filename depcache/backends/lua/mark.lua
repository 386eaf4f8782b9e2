-- Redis Cluster store, when a dependency's marker was missing on a node that may evict keys:
-- set the marker to the current epoch (at least: it only grows), which is above any
-- invalidation an evicted marker could have recorded, and index the entry if it is still valid.
-- KEYS[1] the index
-- ARGV[1] the current epoch, read after index.lua found the marker missing
-- ARGV[2] the entry's name, its key without the entry prefix ('': the entry is void, only set
-- the marker), ARGV[3] ttl in ms ('0': none)
-- ARGV[4] how long a marker outlives its entries, in ms (the guard window)
-- Returns 1.
-- include: _index.lua
local epoch = tonumber(ARGV[1])
local mark = redis.call('ZSCORE', KEYS[1], '')
if not mark or -tonumber(mark) < epoch then
  redis.call('ZADD', KEYS[1], int(-epoch), '')
end
if redis.call('PTTL', KEYS[1]) == -1 and redis.call('ZCARD', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
if ARGV[2] ~= '' then
  local now = clock_ms()
  local ttl = tonumber(ARGV[3])
  local score = '+inf'
  if ttl > 0 then
    score = int(now + ttl)
  end
  index_entry(KEYS[1], ARGV[2], score, now, false, nil)
end
return 1
