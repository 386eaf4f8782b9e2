-- Invalidate dependencies atomically: take a new epoch E, set each dependency's marker to E
-- (entries computed before E are void from now on, even those its index no longer names), and
-- delete the entries its index names.
-- KEYS[1]       the epoch
-- KEYS[1 + i]   index of dependency i (its entries, and its marker: member '' scored -E)
-- ARGV[1]       how long a marker outlives its entries, in milliseconds (the guard window)
-- ARGV[2]       pub/sub channel of the announcement ('' : none)
-- ARGV[3]       the announcement's JSON up to its "removed": count
-- ARGV[4]       the entry prefix (P:k:): an index names entries without it
-- Returns the number of entries deleted.
-- include: _epoch.lua
current_epoch(KEYS[1])
local epoch = redis.call('INCR', KEYS[1])
local marker = string.format('%d', -epoch) -- a string: Redis 7.0 formats a Lua number slowly
local removed = 0
for i = 2, #KEYS do
  local index = KEYS[i]
  local members = redis.call('ZRANGEBYSCORE', index, '(0', '+inf')
  redis.call('DEL', index)
  redis.call('ZADD', index, marker, '')
  redis.call('PEXPIRE', index, ARGV[1])
  for j = 1, #members, 1000 do
    local keys = {}
    for m = j, math.min(j + 999, #members) do
      keys[#keys + 1] = ARGV[4] .. members[m]
    end
    removed = removed + redis.call('DEL', unpack(keys))
  end
end
if ARGV[2] ~= '' then
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. removed .. '}')
end
return removed
