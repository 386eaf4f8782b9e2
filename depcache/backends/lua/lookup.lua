-- Look an entry up, and serve it only if it is still valid: nothing it depends on may have been
-- invalidated after it was computed, or lost (evicted, or gone with a node that lost its data).
-- KEYS[1] the entry; ARGV[1] the manager's prefix (its namespace in the entry's header)
-- The other keys are named from the prefix, as backends/protocols/layout.py names them: this
-- script runs on every hit of a standalone server, where every argument costs the client time
-- (the server does not need keys declared there): the epoch P:epoch, the floor {P:epoch}:floor
-- (entries computed before it are void), the record of the masters' identities
-- {P:epoch}:nodes (see backends/watch.py), the index of dependency d P:d:{d}:i.
-- Returns the entry (a hit), or the epoch a computation starts from (an integer: a miss), or
-- {epoch, 'unreadable'} when the key holds something that is not an entry.
-- include: _epoch.lua
--
-- An entry is: a kind byte, the epoch S its computation started from, the header (JSON:
-- {namespace: [dependency, ...]}), a newline, the payload. Each index holds, besides the
-- entries, the marker of its dependency: member '' scored -(epoch of its last invalidation).
-- The entry is valid when S >= the floor and every dependency of its namespace has a marker
-- <= S. A marker that is missing may have been evicted, so it voids the entry: eviction of
-- any key can cost entries, never serve a stale one.
local prefix = ARGV[1]
local epoch_key = prefix .. ':epoch'
local floor_key = '{' .. epoch_key .. '}:floor'
local index_head = prefix .. ':d:{'

-- valid(v) is true, or false and 'unreadable' when v is not an entry at all
local function valid(v)
  if type(v) ~= 'string' then
    return false, 'unreadable' -- another type of key (GET's error)
  end
  local brace = string.find(v, '{', 2, true)
  local nl = brace and string.find(v, '\n', brace, true)
  local digits = brace and string.match(string.sub(v, 2, brace - 1), '^%d+$')
  local s = digits and tonumber(digits)
  if not nl or not s then
    return false, 'unreadable'
  end
  local floor = redis.call('GET', floor_key)
  if not floor or s < tonumber(floor) then
    return false
  end
  if nl == brace + 2 then
    return true -- '{}': no dependencies
  end
  local ok, head = pcall(cjson.decode, string.sub(v, brace, nl - 1))
  if not ok or type(head) ~= 'table' then
    return false, 'unreadable'
  end
  local deps = head[prefix]
  if deps == nil then
    return true
  end
  if type(deps) ~= 'table' then
    return false, 'unreadable'
  end
  -- each marker present and not above S: the marker is the index's only member scored below 0
  -- (counting it returns an integer; its score, a double Redis formats and Lua parses)
  local neg_s = '-' .. digits
  for _, dep in ipairs(deps) do
    if type(dep) ~= 'string' then
      return false, 'unreadable'
    end
    if redis.call('ZCOUNT', index_head .. dep .. '}:i', neg_s, '(0') ~= 1 then
      return false
    end
  end
  return true
end

local v = redis.pcall('GET', KEYS[1])
local ok, why = false, nil
if v then
  ok, why = valid(v)
  if ok then
    return v
  end
end
local epoch = current_epoch(epoch_key)
if redis.call('EXISTS', floor_key) == 0 then
  -- no floor: a new prefix, or the floor was lost, and with it which entries are void: void
  -- them all. The identities recorded before no longer matter ('?': none yet).
  redis.call('SET', floor_key, string.format('%d', epoch))
  redis.call('SET', '{' .. epoch_key .. '}:nodes', '?')
end
if why then
  return {epoch, why}
end
return epoch
