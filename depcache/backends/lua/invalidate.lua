-- Invalidate dependencies atomically: bump the epoch, leave a marker per dependency (so a
-- computation that started before cannot store afterwards), detach each index and delete
-- the entries it names.
-- KEYS[1]                 the epoch counter
-- KEYS[2i], KEYS[2i+1]    index (zset) and invalidation marker of dependency i
-- ARGV[1]                 marker lifetime in milliseconds (the guard window)
-- ARGV[2]                 pub/sub channel of the announcement ("" : none)
-- ARGV[3]                 the announcement's JSON up to its "removed": count
-- Returns the number of entries deleted.
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- a new prefix, or a server restarted empty: start from the server's clock in microseconds,
  -- above any epoch a computation begun before the restart can hold
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2])))
end
local epoch = redis.call('INCR', KEYS[1])
local removed = 0
for i = 1, (#KEYS - 1) / 2 do
  local index = KEYS[2 * i]
  redis.call('SET', KEYS[2 * i + 1], string.format('%d', epoch), 'PX', ARGV[1])
  local members = redis.call('ZRANGE', index, 0, -1)
  redis.call('DEL', index)
  for j = 1, #members, 1000 do
    removed = removed + redis.call('DEL', unpack(members, j, math.min(j + 999, #members)))
  end
end
if ARGV[2] ~= '' then
  redis.call('PUBLISH', ARGV[2], ARGV[3] .. removed .. '}')
end
return removed
