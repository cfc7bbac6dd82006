"""RedisStore's Lua scripts that store, read, add up usage and keep leases (no I/O here);
RETAIN, which deletes, is in redis_retain, and the index's Lua in redis_index. The key
layout they work on is described in redis_keys. Each takes the key prefix of the layout
first: the store's own, or on a cluster its bucket's (redis_buckets), with that bucket's
prefix also as KEYS[1] so that the call goes to the bucket's slot.
"""

from __future__ import annotations

from .redis_index import LIBRARY, PROBE
from .redis_keys import Script

APPEND = Script(
    "append",
    r"""
-- livingai RedisStore append (layout 1). ARGV: prefix, ttl seconds (0: none), the index
-- of the first record's first argument, "1" when seq is a clock (a cluster's bucket,
-- redis_buckets) or "" when it counts, then two per fence (execution id, lease token),
-- then fourteen per record: version id, node id, execution id, "1" when it has a
-- checkpoint, the packed record, the checkpoint (empty when it has none), its usage:
-- model, prompt tokens, completion tokens, cost (each empty when none) and its day
-- (empty for a version without usage), its stamp (used with a clock), its created_at,
-- and for a run record "<status>\0<agent>" ("" for any other record). Returns how many
-- records were new. A fence whose lease is gone or has another token: nothing is
-- written. Usage is added to the counters of its execution and of its day as the version
-- is stored (see USAGE); each execution's index entry follows its new versions
-- (redis_index). All or nothing: every key is checked before anything is written (a
-- key of another type would fail a write half way), and a version's marker, its field
-- in xr, is written last, so a version is never seen as stored without its indexes.
local p = ARGV[1]
local ttl = tonumber(ARGV[2])
local first = tonumber(ARGV[3])
local clock = ARGV[4] == '1'
"""
    + PROBE
    + LIBRARY
    + r"""
local function wrong(key, want)
  local got = redis.call('TYPE', key)['ok']
  if got ~= 'none' and got ~= want then
    return key .. ' holds a ' .. got .. ' where a ' .. want .. ' belongs'
  end
  return false
end
local problem = wrong(p .. ':seq', 'string') or wrong(p .. ':executions', 'zset')
  or (ttl > 0 and wrong(p .. ':touched', 'zset')) or wrong(p .. ':usage:days', 'zset')
  or wrong(p .. ':ie', 'hash')
if not problem then
  local counter = redis.call('GET', p .. ':seq')
  if counter and not string.match(counter, '^%d+$') then
    problem = p .. ':seq holds ' .. string.format('%q', string.sub(counter, 1, 40))
      .. ', not a counter'
  end
end
if problem then
  return redis.error_reply('livingai: damaged: ' .. problem)
end
for i = 5, first - 1, 2 do
  local held = redis.call('GET', p .. ':lease:' .. ARGV[i])
  if held then
    held = string.match(held, '^(%d+):')
  else  -- expired: still held while no one took it (leases.py)
    held = redis.call('GET', p .. ':held:' .. ARGV[i])
  end
  if held ~= ARGV[i + 1] then
    return redis.error_reply('livingai: fenced')
  end
end
if first > #ARGV then
  return 0  -- no records: the fences hold (a cluster checks a batch's before its parts)
end
-- Check every key, and plan: which records are new, and the entry of each execution a
-- run record of the batch changes. Once the index holds every execution (or the store
-- holds none yet), an execution first seen in this batch is simply indexed with its
-- first version's time, and one seen before already has its entry; until then (and on
-- a store with a TTL, whose keys expire) every execution's entry is looked at, since it
-- may have been stored before the index existed.
local complete = redis.call('GET', p .. ':ixv') == '1'
local fresh = not complete and redis.call('EXISTS', p .. ':executions') == 0
local quick = (complete or fresh) and ttl == 0
local checked, planned, new, plans, order, firsts, zsets = {}, {}, {}, {}, {}, {}, {}
for i = first, #ARGV, 14 do
  local vid, node, exec = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local x = ':' .. exec
  if not checked['x' .. exec] then
    checked['x' .. exec] = true
    problem = wrong(p .. ':xr' .. x, 'hash') or wrong(p .. ':xb' .. x, 'hash')
      or wrong(p .. ':xv' .. x, 'zset') or wrong(p .. ':xn' .. x, 'zset')
      or wrong(p .. ':xl' .. x, 'hash') or wrong(p .. ':xc' .. x, 'string')
      or wrong(p .. ':usage:x' .. x, 'hash')
  end
  if not problem and ARGV[i + 10] ~= '' and not checked['d' .. ARGV[i + 10]] then
    checked['d' .. ARGV[i + 10]] = true
    problem = wrong(p .. ':usage:d:' .. ARGV[i + 10], 'hash')
  end
  if not problem and not checked['n' .. node] then
    checked['n' .. node] = true
    problem = wrong(p .. ':n:' .. node, 'list')
  end
  if problem then
    return redis.error_reply('livingai: rejected: node ' .. node .. ': ' .. problem)
  end
  if not planned[vid] and redis.call('HEXISTS', p .. ':xr' .. x, vid) == 0 then
    planned[vid] = true
    new[i] = true
    firsts[exec] = firsts[exec] or ARGV[i + 12]
    local run = ARGV[i + 13]
    local plan = plans[exec]
    if not plan and (run ~= '' or not quick) then
      local old = ix_decode(redis.call('HGET', p .. ':ie', exec))
      local now = old
      if not now and not complete and redis.call('EXISTS', p .. ':xr' .. x) == 1 then
        now = ix_of_log(p, exec)  -- stored before the index existed
      end
      plan = {old = old, now = now or {started = firsts[exec], status = '', agent = ''}}
      plans[exec] = plan
      order[#order + 1] = exec
    end
    if run ~= '' then
      local cut = string.find(run, '\0', 1, true)
      plan.now = {started = plan.now.started, status = string.sub(run, 1, cut - 1),
                  agent = string.sub(run, cut + 1)}
    end
  end
end
if quick then  -- where an execution first seen is indexed
  problem = wrong(p .. ':ix', 'zset') or wrong(p .. ':ia:', 'zset')
  if problem then
    return redis.error_reply('livingai: damaged: ' .. problem)
  end
end
for _, exec in ipairs(order) do
  problem = ix_wrong(p, plans[exec].old, plans[exec].now, wrong, zsets)
  if problem then
    return redis.error_reply('livingai: rejected: execution ' .. exec .. ': ' .. problem)
  end
end
local now = 0
if ttl > 0 then
  now = tonumber(redis.call('TIME')[1])
end
local last = 0
if clock then
  last = tonumber(redis.call('GET', p .. ':seq') or '0')
end
local function add_usage(key, group, i)
  redis.call('HINCRBY', key, group .. 'calls', 1)
  if ARGV[i + 7] ~= '' then redis.call('HINCRBY', key, group .. 'prompt', ARGV[i + 7]) end
  if ARGV[i + 8] ~= '' then redis.call('HINCRBY', key, group .. 'completion', ARGV[i + 8]) end
  if ARGV[i + 9] ~= '' then redis.call('HINCRBYFLOAT', key, group .. 'cost', ARGV[i + 9]) end
end
local stored = 0
local seen, touched = {}, {}
for i = first, #ARGV, 14 do
  local vid, node, exec = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local x = ':' .. exec
  if new[i] then
    local seq
    if clock then
      last = math.max(last + 1, tonumber(ARGV[i + 11]))
      seq = string.format('%.0f', last)
    else
      seq = redis.call('INCR', p .. ':seq')
    end
    if redis.call('ZADD', p .. ':executions', 'NX', seq, exec) == 1 and not plans[exec] then
      order[#order + 1] = exec  -- first seen now, and no run record in the batch
      plans[exec] = {now = {started = firsts[exec], status = '', agent = ''}}
    end
    redis.call('ZADD', p .. ':xv' .. x, seq, vid)
    redis.call('ZADD', p .. ':xn' .. x, 'NX', seq, node)
    redis.call('HSET', p .. ':xl' .. x, node, vid)
    redis.call('RPUSH', p .. ':n:' .. node, #vid .. ':' .. vid .. exec)
    if ARGV[i + 3] == '1' then
      redis.call('HSET', p .. ':xb' .. x, vid, ARGV[i + 5])
      redis.call('SET', p .. ':xc' .. x, vid)
    end
    local day = ARGV[i + 10]
    if day ~= '' then
      local model = ARGV[i + 6]
      add_usage(p .. ':usage:x' .. x, day .. '\0' .. model .. '\0', i)
      add_usage(p .. ':usage:d:' .. day, model .. '\0', i)
      redis.call('ZADD', p .. ':usage:days', 'NX', tonumber((string.gsub(day, '-', ''))), day)
    end
    redis.call('HSET', p .. ':xr' .. x, vid, ARGV[i + 4])
    stored = stored + 1
  end
  if not seen[exec] then
    seen[exec] = true
    touched[#touched + 1] = exec
  end
end
if clock and stored > 0 then
  redis.call('SET', p .. ':seq', string.format('%.0f', last))
end
for _, exec in ipairs(order) do
  ix_set(p, exec, plans[exec].old, plans[exec].now)
end
if fresh and stored > 0 then
  redis.call('SET', p .. ':ixv', '1')  -- every execution of this store is indexed
end
if ttl > 0 then
  for _, exec in ipairs(touched) do
    local x = ':' .. exec
    for _, tag in ipairs({'xr', 'xb', 'xv', 'xn', 'xl', 'xc', 'usage:x'}) do
      redis.call('EXPIRE', p .. ':' .. tag .. x, ttl)
    end
    for _, node in ipairs(redis.call('ZRANGE', p .. ':xn' .. x, 0, -1)) do
      redis.call('EXPIRE', p .. ':n:' .. node, ttl)
    end
    local entry = ix_decode(redis.call('HGET', p .. ':ie', exec))
    if entry then
      for _, key in ipairs(ix_zsets(p, entry)) do
        redis.call('EXPIRE', key, ttl)
      end
    end
    redis.call('ZADD', p .. ':touched', now, exec)
  end
  local stale = redis.call('ZRANGEBYSCORE', p .. ':touched', '-inf', '(' .. (now - ttl),
                           'LIMIT', 0, 100)
  for _, exec in ipairs(stale) do
    redis.call('ZREM', p .. ':touched', exec)
    redis.call('ZREM', p .. ':executions', exec)
    local old = ix_decode(redis.call('HGET', p .. ':ie', exec))
    if old then
      ix_set(p, exec, old, nil)
    end
  end
  for _, key in ipairs({'seq', 'executions', 'touched', 'ie', 'ixv'}) do
    redis.call('EXPIRE', p .. ':' .. key, ttl)
  end
end
return stored
""",
)

USAGE = Script(
    "usage",
    """
-- livingai RedisStore usage (layout 1). ARGV: prefix, 'days' with the first and last day
-- as YYYYMMDD numbers, or 'executions' then execution ids. Returns, per day or per
-- execution found, its name and its counters as HGETALL gives them. A day's fields are
-- "<model>\\0<counter>", an execution's "<day>\\0<model>\\0<counter>"; counters are
-- calls, prompt, completion and cost, added up as versions are stored (see APPEND).
local p, op = ARGV[1], ARGV[2]
"""
    + PROBE
    + """local out = {}
if op == 'days' then
  for _, day in ipairs(redis.call('ZRANGEBYSCORE', p .. ':usage:days', ARGV[3], ARGV[4])) do
    out[#out + 1] = day
    out[#out + 1] = redis.call('HGETALL', p .. ':usage:d:' .. day)
  end
else
  for i = 3, #ARGV do
    out[#out + 1] = ARGV[i]
    out[#out + 1] = redis.call('HGETALL', p .. ':usage:x:' .. ARGV[i])
  end
end
return out
""",
)

LEASE = Script(
    "lease",
    """
-- livingai RedisStore leases (layout 1). ARGV: prefix, operation, execution id, worker
-- id, token, milliseconds, the store's TTL in seconds (0: none), and for 'acquire' the
-- worker to take over ('' for none), for 'list' a SCAN pattern. A lease is the key
-- {prefix}:lease:{x} = "<token>:<worker id>", expiring by itself (PX); tokens come from
-- the counter {prefix}:fence, which never expires, so a token is never given twice.
-- {prefix}:held:{x} keeps the token until it is released or taken: an expired lease
-- no one took is still its holder's to renew (leases.py). {prefix}:leased (a zset:
-- execution id -> expiry in ms) indexes the leases, so that 'list' costs the leases
-- there are, not the keys; leases taken before it existed are added to it once, by a
-- SCAN, and {prefix}:leasedv marks that done.
-- Replies: {1 or 0, "<token>:<worker>" held, expiry in ms since the epoch}.
local p, op, x, worker, token, ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ttl = tonumber(ARGV[7])
"""
    + PROBE
    + """local key, kept = p .. ':lease:' .. x, p .. ':held:' .. x
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = token .. ':' .. worker
local leased = p .. ':leased'
local function keep(value)
  if ttl > 0 then
    redis.call('SET', kept, value, 'EX', ttl)
  else
    redis.call('SET', kept, value)
  end
end
local function listed(until_ms)
  redis.call('ZADD', leased, until_ms, x)
  if ttl > 0 then
    redis.call('EXPIRE', leased, ttl)
  end
end
if op == 'acquire' then
  local held = redis.call('GET', key)
  if held then
    local holder = string.match(held, '^%d+:(.*)$')
    if holder ~= worker and (ARGV[8] == '' or holder ~= ARGV[8]) then
      return {0, held, now + redis.call('PTTL', key)}
    end
  end
  if redis.call('EXISTS', p .. ':fence') == 0 then  -- the first lease: none to index
    redis.call('SET', p .. ':leasedv', '1')
  end
  local fresh = redis.call('INCR', p .. ':fence')
  redis.call('SET', key, fresh .. ':' .. worker, 'PX', ms)
  keep(fresh)
  listed(now + tonumber(ms))
  return {1, fresh .. ':' .. worker, now + tonumber(ms)}
elseif op == 'renew' then
  local held = redis.call('GET', key)
  if held == mine or (not held and redis.call('GET', kept) == token) then
    redis.call('SET', key, mine, 'PX', ms)
    keep(token)
    listed(now + tonumber(ms))
    return {1, mine, now + tonumber(ms)}
  end
  return {0, '', 0}
elseif op == 'release' then
  if redis.call('GET', key) == mine then
    redis.call('DEL', key)
    redis.call('ZREM', leased, x)
  end
  if redis.call('GET', kept) == token then
    redis.call('DEL', kept)
  end
  return {1, '', 0}
elseif op == 'list' then
  if redis.call('EXISTS', p .. ':leasedv') == 0 then  -- leases from before the index
    local cursor = '0'
    repeat
      local page = redis.call('SCAN', cursor, 'MATCH', ARGV[8], 'COUNT', 1000)
      cursor = page[1]
      for _, name in ipairs(page[2]) do
        local left = redis.call('PTTL', name)
        if left > 0 then
          redis.call('ZADD', leased, now + left, string.sub(name, #p + 8))
        end
      end
    until cursor == '0'
    redis.call('SET', p .. ':leasedv', '1')
  end
  redis.call('ZREMRANGEBYSCORE', leased, '-inf', now)  -- expired: not live any more
  local out = {}
  for _, name in ipairs(redis.call('ZRANGE', leased, 0, -1)) do
    local lease = p .. ':lease:' .. name
    local held, left = redis.call('GET', lease), redis.call('PTTL', lease)
    if held and left > 0 then
      out[#out + 1] = name
      out[#out + 1] = held
      out[#out + 1] = now + left
    end
  end
  return out
end
return redis.error_reply('livingai: unknown lease operation ' .. tostring(op))
""",
)

READ = Script(
    "read",
    """
-- livingai RedisStore reads (layout 1). ARGV: prefix, operation, argument. A record comes
-- back as two values: the packed record, then its checkpoint or nil. On a cluster,
-- 'latest' and 'stamped' are 'read' and 'history' of one bucket with each record after
-- its seq, and 'first_seen' the executions each after the seq of its first version: the
-- order across buckets (redis_buckets).
local p, op, arg = ARGV[1], ARGV[2], ARGV[3]
"""
    + PROBE
    + """local function present(key, fields)
  local out = {}
  for i = 1, #fields, 500 do
    local got = redis.call('HMGET', key, unpack(fields, i, math.min(i + 499, #fields)))
    for j = 1, #got do
      if got[j] then
        out[#out + 1] = got[j]
      end
    end
  end
  return out
end
local function records(exec, vids, out)
  for i = 1, #vids, 500 do
    local last = math.min(i + 499, #vids)
    local heads = redis.call('HMGET', p .. ':xr:' .. exec, unpack(vids, i, last))
    local blobs = redis.call('HMGET', p .. ':xb:' .. exec, unpack(vids, i, last))
    for j = 1, #heads do
      if heads[j] then
        out[#out + 1] = heads[j]
        out[#out + 1] = blobs[j]
      end
    end
  end
  return out
end
local function locate(entry)
  local colon = string.find(entry, ':', 1, true)
  local n = tonumber(string.sub(entry, 1, colon - 1))
  return string.sub(entry, colon + n + 1), string.sub(entry, colon + 1, colon + n)
end
if op == 'read' then
  local entry = redis.call('LINDEX', p .. ':n:' .. arg, -1)
  if not entry then
    return false
  end
  local exec, vid = locate(entry)
  local out = records(exec, {vid}, {})
  if #out == 0 then
    return false
  end
  return out
elseif op == 'history' then
  local out, seen = {}, {}
  for _, entry in ipairs(redis.call('LRANGE', p .. ':n:' .. arg, 0, -1)) do
    if not seen[entry] then
      seen[entry] = true
      local exec, vid = locate(entry)
      records(exec, {vid}, out)
    end
  end
  return out
elseif op == 'versions' then
  return records(arg, redis.call('ZRANGE', p .. ':xv:' .. arg, 0, -1), {})
elseif op == 'nodes' then
  local latest = present(p .. ':xl:' .. arg, redis.call('ZRANGE', p .. ':xn:' .. arg, 0, -1))
  return records(arg, latest, {})
elseif op == 'checkpoint' then
  local vid = redis.call('GET', p .. ':xc:' .. arg)
  if not vid then
    return false
  end
  local out = records(arg, {vid}, {})
  if #out == 0 then
    return false
  end
  return out
elseif op == 'latest' or op == 'stamped' then
  local entries = {}
  if op == 'latest' then
    entries[1] = redis.call('LINDEX', p .. ':n:' .. arg, -1)
  else
    entries = redis.call('LRANGE', p .. ':n:' .. arg, 0, -1)
  end
  local out, seen = {}, {}
  for _, entry in ipairs(entries) do
    if entry and not seen[entry] then
      seen[entry] = true
      local exec, vid = locate(entry)
      local got = records(exec, {vid}, {})
      if #got == 2 then
        out[#out + 1] = redis.call('ZSCORE', p .. ':xv:' .. exec, vid) or '0'
        out[#out + 1] = got[1]
        out[#out + 1] = got[2]
      end
    end
  end
  return out
elseif op == 'first_seen' then
  local out = {}
  local found = redis.call('ZRANGE', p .. ':executions', 0, -1, 'WITHSCORES')
  for i = 1, #found, 2 do
    if redis.call('EXISTS', p .. ':xr:' .. found[i]) == 1 then
      out[#out + 1] = found[i]
      out[#out + 1] = found[i + 1]
    end
  end
  return out
elseif op == 'executions' then
  local out = {}
  for _, exec in ipairs(redis.call('ZRANGE', p .. ':executions', 0, -1)) do
    if redis.call('EXISTS', p .. ':xr:' .. exec) == 1 then
      out[#out + 1] = exec
    end
  end
  return out
end
return redis.error_reply('livingai: unknown read operation ' .. tostring(op))
""",
)
