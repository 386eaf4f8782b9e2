-- Redis Cluster store: delete an entry this call wrote, if it is still there (its index refused
-- it: it is void, and only takes room).
-- KEYS[1] the entry, ARGV[1] its bytes
-- Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
