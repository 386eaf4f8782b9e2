-- Redis Cluster store: add an entry to one dependency's index, unless that dependency was
-- invalidated after the computation started. The entry itself is written in the same round
-- trip, on its own node: hits check the marker, so an entry whose index refused it is void.
-- KEYS[1] the index (entries and the dependency's marker, member '': see lookup.lua)
-- ARGV[1] the entry's name (its key without the entry prefix), ARGV[2] ttl in ms ('0': none),
-- ARGV[3] S, the epoch the computation
-- started from, ARGV[4] '1' when this node may evict keys
-- Returns 1 when indexed, 0 when refused, -1 when the marker is missing and may have been
-- evicted (the caller then reads the epoch and sets the marker: mark.lua).
-- include: _index.lua
local s = tonumber(ARGV[3])
local mark = redis.call('ZSCORE', KEYS[1], '')
local now, micros = clock_ms()
local ttl = tonumber(ARGV[2])
local score = '+inf'
if ttl > 0 then
  score = now + ttl
end
if mark then
  if -tonumber(mark) > s then
    return 0
  end
  index_entry(KEYS[1], ARGV[1], score, now, micros % 4 == 0, nil)
  return 1
end
if ARGV[4] == '1' then
  return -1
end
-- a new dependency (this node cannot evict; a node that lost its data is the watch's business)
redis.call('ZADD', KEYS[1], score, ARGV[1], -s, '')
if score ~= '+inf' then
  redis.call('PEXPIREAT', KEYS[1], score)
end
return 1
