-- Cross-process stampede protection: register as a waiter while the lock is held.
-- KEYS[1] the lock, KEYS[2] the waiter count, KEYS[3] the wake-up list (same slot)
-- ARGV[1] how long the count may live, in milliseconds
-- Returns 1 when the caller should wait (BLPOP KEYS[3]), 0 when the lock is already gone.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
