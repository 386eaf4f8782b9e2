-- Cross-process stampede protection: release the lock (if still ours) and wake every waiter.
-- KEYS[1] the lock, KEYS[2] the waiter count, KEYS[3] the wake-up list (same slot)
-- ARGV[1] the token the lock was taken with
-- Returns the number of waiters woken.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
local waiters = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('DEL', KEYS[2])
for _ = 1, waiters do
  redis.call('RPUSH', KEYS[3], '1')
end
if waiters > 0 then
  redis.call('PEXPIRE', KEYS[3], 5000)
end
return waiters
