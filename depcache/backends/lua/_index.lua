-- Shared by the scripts that index an entry (included where a script says so): add an entry to
-- an index that already holds its marker, and keep the index's life and size in check.
-- An index names an entry by its key without the manager's entry prefix (P:k:): short names
-- keep a small index in Redis's compact encoding (members of at most 64 bytes).
--
-- Every number a script hands to redis.call is a string made by int() below: Redis 7.0 turns a
-- Lua number into a command's argument with snprintf('%.17g'), which measured a fifth of a
-- standalone miss's instructions on the server (callgrind).

-- a whole number as a command's argument
local function int(x)
  return string.format('%d', x)
end

-- whether a dependency's marker is present and not above epoch S (the marker is member ''
-- scored -epoch, the only member below 0: see lookup.lua); neg_s is '-S'. ZCOUNT's reply is an
-- integer: reading the score (ZSCORE) had Redis format a double for the reply, and Lua parse it.
local function marker_at_most(index, neg_s)
  return redis.call('ZCOUNT', index, neg_s, '(0') == 1
end

-- whether a dependency's marker is present at all (anything scored below 0 counts: a store
-- then refuses rather than write a marker over one it cannot read)
local function has_marker(index)
  return redis.call('ZCOUNT', index, '-inf', '(0') ~= 0
end

-- index: the key, entry: the member, score: its expiry in ms or '+inf' (a string), now: ms,
-- sweep: whether this call also drops members that expired, salt: a number that varies between
-- calls (whether, one call in four of those that sweep, and which members it checks for entries
-- deleted or evicted otherwise), or nil on a cluster, where a script may not read the entries
-- (other slots), entries: the entry prefix (P:k:)
local function index_entry(index, entry, score, now, sweep, salt, entries)
  redis.call('ZADD', index, score, entry)
  -- the index (and the marker in it) lives as long as its longest-lived member
  if score == '+inf' then
    redis.call('PERSIST', index)
  else
    redis.call('PEXPIREAT', index, score, 'GT')
  end
  if not sweep then
    return
  end
  -- members whose entries expired, or were deleted or evicted, leave their names behind: about
  -- one store in four drops the expired ones, so that the index cannot grow without bound, and
  -- one in sixteen also checks 16 names for entries gone otherwise (as many names per store as
  -- checking 4 in every fourth, at a quarter of the commands: measured, the check was a tenth
  -- of a standalone miss's time on the server)
  redis.call('ZREMRANGEBYSCORE', index, '(0', int(now))
  if not salt or salt % 16 ~= 0 then
    return
  end
  local size = redis.call('ZCARD', index)
  if size > 32 then
    local from = 1 + salt % (size - 16)
    local members = redis.call('ZRANGE', index, int(from), int(from + 15))
    local keys = {}
    for i, member in ipairs(members) do
      keys[i] = entries .. member
    end
    if redis.call('EXISTS', unpack(keys)) < #keys then
      for i, member in ipairs(members) do
        if redis.call('EXISTS', keys[i]) == 0 then
          redis.call('ZREM', index, member)
        end
      end
    end
  end
end

local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[2])
end
