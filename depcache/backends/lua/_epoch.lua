-- Shared (included where a script says so): a prefix's epoch, started from the server's clock
-- in microseconds when it is missing (a new prefix, or the epoch was lost). That is above any
-- epoch handed out before, as an epoch grows by one per invalidation.
local function current_epoch(key)
  local epoch = redis.call('GET', key)
  if not epoch then
    local t = redis.call('TIME')
    epoch = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
    redis.call('SET', key, epoch)
  end
  return tonumber(epoch)
end
