-- Read an entry; on a miss, also the epoch (so the store can refuse a stale result).
-- KEYS[1] the entry, KEYS[2] the epoch counter
-- Returns the entry's bytes on a hit, or a one-element array holding the epoch on a miss.
local value = redis.call('GET', KEYS[1])
if value then
  return value
end
return {redis.call('GET', KEYS[2]) or '0'}
