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
local ok = marker_at_most(KEYS[1], '-' .. ARGV[3])
if not ok and has_marker(KEYS[1]) then
  return 0
end
if not ok and ARGV[4] == '1' then
  return -1
end
local now, micros = clock_ms()
local score = '+inf'
if ARGV[2] ~= '0' then
  score = int(now + tonumber(ARGV[2]))
end
if ok then
  index_entry(KEYS[1], ARGV[1], score, now, micros % 4 == 0, nil)
  return 1
end
-- a new dependency (this node cannot evict; a node that lost its data is the watch's business)
redis.call('ZADD', KEYS[1], score, ARGV[1], '-' .. ARGV[3], '')
if score ~= '+inf' then
  redis.call('PEXPIREAT', KEYS[1], score)
end
return 1
