-- Record the identities of a deployment's masters for one prefix, and raise the prefix's floor
-- when they show that a master lost data: entries computed before the new floor are void.
-- KEYS[1] the epoch, KEYS[2] the floor, KEYS[3] the record (same slot: {P:epoch})
-- ARGV[1] the record the caller read ('' : none), ARGV[2] the new record
-- ARGV[3] '1' to raise the floor
-- Returns 1 when done, 0 when the record changed since the caller read it (read it again).
local stored = redis.call('GET', KEYS[3]) or ''
if stored ~= ARGV[1] then
  return 0
end
if ARGV[3] == '1' then
  -- above every epoch handed out so far, also if the epoch itself was lost: the clock in
  -- microseconds grows faster than the epoch (one per invalidation)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local epoch = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now) + 1
  redis.call('SET', KEYS[1], string.format('%d', epoch))
  redis.call('SET', KEYS[2], string.format('%d', epoch))
end
redis.call('SET', KEYS[3], ARGV[2])
return 1
