-- Whether an entry computed from epoch S is still valid (an L1 hit validated with the server,
-- l1_validate): S is not below the floor, and every dependency has a marker (see lookup.lua)
-- that is not above S.
-- KEYS[1] the floor, KEYS[1 + i] the index of dependency i; ARGV[1] S
-- Returns 1 when valid, else 0.
local s = tonumber(ARGV[1])
local floor = redis.call('GET', KEYS[1])
if not floor or s < tonumber(floor) then
  return 0
end
-- each marker present and not above S: the index's only member scored below 0 (lookup.lua)
local neg_s = '-' .. ARGV[1]
for i = 2, #KEYS do
  if redis.call('ZCOUNT', KEYS[i], neg_s, '(0') ~= 1 then
    return 0
  end
end
return 1
