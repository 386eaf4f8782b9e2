-- Store one entry and index it under its dependencies, atomically, unless one of them was
-- invalidated after the computation started (the stale-set guard).
-- KEYS[1] the entry, KEYS[2] the epoch, KEYS[3] the floor, KEYS[4] the record of the masters'
-- identities (see lookup.lua), KEYS[4 + i] index of dependency i
-- ARGV[1] the entry: kind byte, then the epoch S it was computed from and the rest (see
--         lookup.lua); with ARGV[3] = '' it has no S and is stored at the current epoch
-- ARGV[2] ttl in milliseconds, '0' for none
-- ARGV[3] S, or '' to store unconditionally
-- ARGV[4] '1' when this server may evict keys, so that a missing marker may have been lost
-- ARGV[5] how long a marker outlives its entries, in milliseconds (the guard window)
-- ARGV[6] the entry's name in the indexes: its key without the entry prefix
-- Returns 1 when stored, 0 when refused.
-- include: _index.lua
-- include: _epoch.lua
local n = #KEYS - 4
local member = ARGV[6]
local entries = string.sub(KEYS[1], 1, #KEYS[1] - #member)
local s = tonumber(ARGV[3])
local value = ARGV[1]
local missing = {} -- i -> true: dependency i has no marker
local any_missing = false

local neg_s = s and '-' .. ARGV[3]
for i = 1, n do
  local index = KEYS[4 + i]
  if not (s and marker_at_most(index, neg_s)) then
    if not has_marker(index) then
      missing[i] = true
      any_missing = true
    elseif s then
      return 0 -- invalidated after the computation started
    end
  end
end
local current = nil
if not s then
  current = current_epoch(KEYS[2])
  s = current
  value = string.sub(value, 1, 1) .. string.format('%d', s) .. string.sub(value, 2)
end
-- a missing marker: a new dependency, or one whose marker expired (then its invalidation is
-- older than the guard window, which no stored computation may span), or was evicted. An
-- evicted marker may have recorded an invalidation after S, which only the epoch can rule
-- out: the marker then restarts at the current epoch, and the entry is stored only if nothing
-- at all was invalidated since S
local start = s
if any_missing and ARGV[4] == '1' then
  current = current or current_epoch(KEYS[2])
  start = current
end
local floor = redis.call('GET', KEYS[3])
if not floor then
  current = current or current_epoch(KEYS[2])
  redis.call('SET', KEYS[3], string.format('%d', current))
  redis.call('SET', KEYS[4], '?')
  floor = current
end
if start > s or s < tonumber(floor) then
  for i = 1, n do
    if missing[i] then
      redis.call('ZADD', KEYS[4 + i], int(-start), '')
      redis.call('PEXPIRE', KEYS[4 + i], ARGV[5])
    end
  end
  return 0
end

local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
else
  redis.call('SET', KEYS[1], value)
end
if n == 0 then
  return 1
end
local now, micros = clock_ms()
local score = '+inf'
if ttl > 0 then
  score = int(now + ttl)
end
for i = 1, n do
  local index = KEYS[4 + i]
  if missing[i] then
    redis.call('ZADD', index, score, member, int(-s), '')
    if score ~= '+inf' then
      redis.call('PEXPIREAT', index, score)
    end
  else
    index_entry(index, member, score, now, (micros + i) % 4 == 0, micros + i, entries)
  end
end
return 1
