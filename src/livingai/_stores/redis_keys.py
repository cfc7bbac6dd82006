"""RedisStore's key layout, Lua scripts and record encoding (no I/O here).

Every key starts with `{prefix}:`; `{x}` is an execution id, `{n}` a node id, both as
given (UTF-8). The id is always the last part of a key, after a fixed tag, so no id can
make two keys collide, whatever colons it holds.

    {prefix}:seq              string  server-side counter: INCR once per stored version;
                                      gives append order, never the wall clock
    {prefix}:executions       zset    execution id -> seq of its first version
    {prefix}:xr:{x}           hash    version id -> packed record, all but the checkpoint's
                                      bytes (see `pack`); a field here is what makes a
                                      version "stored"
    {prefix}:xb:{x}           hash    version id -> checkpoint bytes, as given (only for
                                      versions that have one)
    {prefix}:xv:{x}           zset    version id -> seq: every version, append order
    {prefix}:xn:{x}           zset    node id -> seq of its first version: first-seen order
    {prefix}:xl:{x}           hash    node id -> version id of its latest version
    {prefix}:xc:{x}           string  version id of the latest version with a checkpoint
    {prefix}:n:{n}            list    the node's versions, oldest first; each entry is
                                      "<len(version id)>:<version id><execution id>"
    {prefix}:touched          zset    (only with a TTL) execution id -> server time of its
                                      last append, to prune expired executions
    {prefix}:usage:x:{x}      hash    "<day>\\0<model>\\0<counter>" -> sum: the execution's
                                      usage (counters: calls, prompt, completion, cost)
    {prefix}:usage:d:{day}    hash    "<model>\\0<counter>" -> sum: a day's usage (UTC)
    {prefix}:usage:days       zset    day -> YYYYMMDD: the days with usage
    {prefix}:lease:{x}        string  "<token>:<worker id>", expiring by itself (PX): who
                                      runs the execution; see LEASE
    {prefix}:held:{x}         string  the token of the lease last taken, until released:
                                      its holder may renew it after the key above expired
                                      (a store outage), while no one else took it
    {prefix}:fence            string  the counter lease tokens come from; never expires

A batch is stored by one APPEND script call, so a crash never leaves a version without
its index entries or an index entry without its version. A version whose id is already
a field of `xr:{x}` is skipped (HSETNX), so a batch sent again after a lost reply is
stored once. Reads are one READ script call each.

With a TTL every key an append writes, and every key of the executions it touches
(their node lists included), gets that expiry again: an execution expires as a unit,
`ttl` seconds after its last append. Expired executions are pruned from
`{prefix}:executions` a hundred at a time by later appends, and hidden from
`list_executions` meanwhile.

Nothing is ever deleted or rewritten but by the RETAIN script, for retention: it deletes
whole executions (every key above that names one, its entries in the node lists and its
usage in the day counters), every version of single nodes of one execution (their
entries in every index above and their usage in the counters; the execution's keys go
with its last version), or the checkpoints of their older versions.

The scripts build key names from the prefix, so they run on a standalone or replicated
Redis (or a Sentinel-managed one), not on Redis Cluster.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from .._core.model import RECORD_COLUMNS, NodeRecord
from .._core.usage import has_usage

FORMAT = 2  # first byte of every packed record; format 1 (no usage columns) still reads


@dataclass(frozen=True)
class Script:
    name: str
    text: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


REJECTED = "livingai: rejected:"  # a record's keys hold something else: refuse it
DAMAGED = "livingai: damaged:"  # the prefix's own keys are damaged: nothing can be stored

APPEND = Script(
    "append",
    """
-- livingai RedisStore append (layout 1). ARGV: prefix, ttl seconds (0: none), the index
-- of the first record's first argument, then two per fence (execution id, lease token),
-- then eleven per record: version id, node id, execution id, "1" when it has a
-- checkpoint, the packed record, the checkpoint (empty when it has none), then its usage:
-- model, prompt tokens, completion tokens, cost (each empty when none) and its day
-- (empty for a version without usage). Returns how many records were new. A fence
-- whose lease is gone or has another token: nothing is written. Usage is added to the
-- counters of its execution and of its day as the version is stored (see USAGE).
-- All or nothing: every key is checked before anything is written (a key of another
-- type would fail a write half way), and a version's marker, its field in xr, is
-- written last, so a version is never seen as stored without its indexes.
local p = ARGV[1]
local ttl = tonumber(ARGV[2])
local first = tonumber(ARGV[3])
local function wrong(key, want)
  local got = redis.call('TYPE', key)['ok']
  if got ~= 'none' and got ~= want then
    return key .. ' holds a ' .. got .. ' where a ' .. want .. ' belongs'
  end
  return false
end
local problem = wrong(p .. ':seq', 'string') or wrong(p .. ':executions', 'zset')
  or (ttl > 0 and wrong(p .. ':touched', 'zset')) or wrong(p .. ':usage:days', 'zset')
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
for i = 4, first - 1, 2 do
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
local checked = {}
for i = first, #ARGV, 11 do
  local node, exec = ARGV[i + 1], ARGV[i + 2]
  if not checked['x' .. exec] then
    checked['x' .. exec] = true
    local x = ':' .. exec
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
end
local now = 0
if ttl > 0 then
  now = tonumber(redis.call('TIME')[1])
end
local function add_usage(key, group, i)
  redis.call('HINCRBY', key, group .. 'calls', 1)
  if ARGV[i + 7] ~= '' then redis.call('HINCRBY', key, group .. 'prompt', ARGV[i + 7]) end
  if ARGV[i + 8] ~= '' then redis.call('HINCRBY', key, group .. 'completion', ARGV[i + 8]) end
  if ARGV[i + 9] ~= '' then redis.call('HINCRBYFLOAT', key, group .. 'cost', ARGV[i + 9]) end
end
local stored = 0
local seen, touched = {}, {}
for i = first, #ARGV, 11 do
  local vid, node, exec = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local x = ':' .. exec
  if redis.call('HEXISTS', p .. ':xr' .. x, vid) == 0 then
    local seq = redis.call('INCR', p .. ':seq')
    redis.call('ZADD', p .. ':executions', 'NX', seq, exec)
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
      add_usage(p .. ':usage:x' .. x, day .. '\\0' .. model .. '\\0', i)
      add_usage(p .. ':usage:d:' .. day, model .. '\\0', i)
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
if ttl > 0 then
  for _, exec in ipairs(touched) do
    local x = ':' .. exec
    for _, tag in ipairs({'xr', 'xb', 'xv', 'xn', 'xl', 'xc', 'usage:x'}) do
      redis.call('EXPIRE', p .. ':' .. tag .. x, ttl)
    end
    for _, node in ipairs(redis.call('ZRANGE', p .. ':xn' .. x, 0, -1)) do
      redis.call('EXPIRE', p .. ':n:' .. node, ttl)
    end
    redis.call('ZADD', p .. ':touched', now, exec)
  end
  local stale = redis.call('ZRANGEBYSCORE', p .. ':touched', '-inf', '(' .. (now - ttl),
                           'LIMIT', 0, 100)
  for _, exec in ipairs(stale) do
    redis.call('ZREM', p .. ':touched', exec)
    redis.call('ZREM', p .. ':executions', exec)
  end
  for _, key in ipairs({'seq', 'executions', 'touched'}) do
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
local out = {}
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
-- no one took is still its holder's to renew (leases.py).
-- Replies: {1 or 0, "<token>:<worker>" held, expiry in ms since the epoch}.
local p, op, x, worker, token, ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ttl = tonumber(ARGV[7])
local key, kept = p .. ':lease:' .. x, p .. ':held:' .. x
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local mine = token .. ':' .. worker
local function keep(value)
  if ttl > 0 then
    redis.call('SET', kept, value, 'EX', ttl)
  else
    redis.call('SET', kept, value)
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
  local fresh = redis.call('INCR', p .. ':fence')
  redis.call('SET', key, fresh .. ':' .. worker, 'PX', ms)
  keep(fresh)
  return {1, fresh .. ':' .. worker, now + tonumber(ms)}
elseif op == 'renew' then
  local held = redis.call('GET', key)
  if held == mine or (not held and redis.call('GET', kept) == token) then
    redis.call('SET', key, mine, 'PX', ms)
    keep(token)
    return {1, mine, now + tonumber(ms)}
  end
  return {0, '', 0}
elseif op == 'release' then
  if redis.call('GET', key) == mine then
    redis.call('DEL', key)
  end
  if redis.call('GET', kept) == token then
    redis.call('DEL', kept)
  end
  return {1, '', 0}
elseif op == 'list' then
  local out, cursor = {}, '0'
  repeat
    local page = redis.call('SCAN', cursor, 'MATCH', ARGV[8], 'COUNT', 1000)
    cursor = page[1]
    for _, name in ipairs(page[2]) do
      local held, left = redis.call('GET', name), redis.call('PTTL', name)
      if held and left > 0 then
        out[#out + 1] = string.sub(name, #p + 8)
        out[#out + 1] = held
        out[#out + 1] = now + left
      end
    end
  until cursor == '0'
  return out
end
return redis.error_reply('livingai: unknown lease operation ' .. tostring(op))
""",
)

READ = Script(
    "read",
    """
-- livingai RedisStore reads (layout 1). ARGV: prefix, operation, argument. A record comes
-- back as two values: the packed record, then its checkpoint or nil.
local p, op, arg = ARGV[1], ARGV[2], ARGV[3]
local function present(key, fields)
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

RETAIN = Script(
    "retain",
    """
-- livingai RedisStore retention (layout 1): the only script that deletes or rewrites.
-- ARGV: prefix, then 'delete' and execution ids, or 'nodes', an execution id and node
-- ids, or 'drop', an execution id and how many of its newest checkpoints to keep.
-- Returns how many versions (blobs) went. Every key is checked before anything is
-- written, as in APPEND.
-- 'delete': every key of each execution goes, and its lease; its entries leave the node
-- lists (a node id may be used by other executions: their entries stay), and its usage,
-- from usage:x, is taken off the day counters (a model whose calls reach 0 leaves the
-- day, a day left empty leaves usage:days).
-- 'nodes': every version of those nodes of the execution leaves xr, xb and xv, each
-- node leaves xn and xl, the execution's entries leave the node lists, and each
-- version's usage, read from its packed record, is taken off usage:x and the day counters
-- (a day and model whose calls reach 0 leave them, a day left empty leaves usage:days).
-- xc then names the newest version left with a blob, or goes; an execution left without
-- versions loses its keys and leaves executions and touched (its lease stays).
-- 'drop': each blob but the newest `keep` leaves xb, and its version's packed record
-- ends in 0xFFFFFFFF (no checkpoint, see `pack`) instead of the blob's length; xc names
-- the newest checkpoint left, or goes.
local p, op = ARGV[1], ARGV[2]
local function wrong(key, want)
  local got = redis.call('TYPE', key)['ok']
  if got ~= 'none' and got ~= want then
    return key .. ' holds a ' .. got .. ' where a ' .. want .. ' belongs'
  end
  return false
end
local function damaged(problem)
  return redis.error_reply('livingai: damaged: ' .. problem)
end
local function owner(entry)
  local colon = string.find(entry, ':', 1, true)
  local n = colon and tonumber(string.sub(entry, 1, colon - 1))
  if not n then
    return nil
  end
  return string.sub(entry, colon + n + 1)
end
local function negated(value)
  if string.sub(value, 1, 1) == '-' then
    return string.sub(value, 2)
  end
  return '-' .. value
end
local function split(entry)
  -- a node list entry, "<len(version id)>:<version id><execution id>": version, execution
  local colon = string.find(entry, ':', 1, true)
  local n = colon and tonumber(string.sub(entry, 1, colon - 1))
  if not n then
    return nil, nil
  end
  return string.sub(entry, colon + 1, colon + n), string.sub(entry, colon + n + 1)
end
local function usage_of(head)
  -- The usage a packed record (see `pack`) carries, as APPEND counted it, or nil: the
  -- columns in RECORD_COLUMNS order, created_at 7th, then model, prompt tokens,
  -- completion tokens and cost 10th to 13th; false for None. Format 1 has no usage.
  if string.byte(head, 1) ~= 2 then
    return nil
  end
  local cols, pos = {}, 2
  while #cols < 13 and pos + 3 <= #head do
    local a, b, c, d = string.byte(head, pos, pos + 3)
    local n = ((a * 256 + b) * 256 + c) * 256 + d
    pos = pos + 4
    if n == 4294967295 then
      cols[#cols + 1] = false
    else
      cols[#cols + 1] = string.sub(head, pos, pos + n - 1)
      pos = pos + n
    end
  end
  if #cols < 13 or not (cols[10] or cols[11] or cols[12] or cols[13]) then
    return nil
  end
  return {day = string.sub(cols[7] or '', 1, 10), model = cols[10] or '',
          prompt = cols[11], completion = cols[12], cost = cols[13]}
end
local function rewrite_list(key, exec)
  -- the list without the execution's entries, its expiry kept
  local entries = redis.call('LRANGE', key, 0, -1)
  local kept = {}
  for _, entry in ipairs(entries) do
    if owner(entry) ~= exec then
      kept[#kept + 1] = entry
    end
  end
  if #kept < #entries then
    local ttl = redis.call('PTTL', key)
    redis.call('DEL', key)
    for j = 1, #kept, 500 do
      redis.call('RPUSH', key, unpack(kept, j, math.min(j + 499, #kept)))
    end
    if #kept > 0 and ttl > 0 then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
if op == 'delete' then
  local problem = wrong(p .. ':executions', 'zset') or wrong(p .. ':touched', 'zset')
    or wrong(p .. ':usage:days', 'zset')
  local plans = {}
  for i = 3, #ARGV do
    if problem then
      break
    end
    local exec = ARGV[i]
    local x = ':' .. exec
    problem = wrong(p .. ':xr' .. x, 'hash') or wrong(p .. ':xn' .. x, 'zset')
      or wrong(p .. ':usage:x' .. x, 'hash')
    local plan = {exec = exec, lists = {}, usage = {}}
    if not problem then
      for _, node in ipairs(redis.call('ZRANGE', p .. ':xn' .. x, 0, -1)) do
        local key = p .. ':n:' .. node
        problem = problem or wrong(key, 'list')
        plan.lists[#plan.lists + 1] = key
      end
      local fields = redis.call('HGETALL', p .. ':usage:x' .. x)
      for j = 1, #fields, 2 do
        local day, model, counter = string.match(fields[j], '^([^%z]*)%z(.*)%z([^%z]*)$')
        local key = day and p .. ':usage:d:' .. day
        if not day or not tonumber(fields[j + 1]) then
          problem = problem or p .. ':usage:x' .. x .. ' holds a field that is not a counter'
        elseif not problem then
          local field = model .. '\\0' .. counter
          problem = wrong(key, 'hash')
          if not problem and not tonumber(redis.call('HGET', key, field) or '0') then
            problem = key .. ' holds a field that is not a counter'
          end
          plan.usage[#plan.usage + 1] = {key, field, fields[j + 1], day, model}
        end
      end
    end
    plans[#plans + 1] = plan
  end
  if problem then
    return damaged(problem)
  end
  local deleted = 0
  for _, plan in ipairs(plans) do
    local exec = plan.exec
    local x = ':' .. exec
    deleted = deleted + redis.call('HLEN', p .. ':xr' .. x)
    for _, key in ipairs(plan.lists) do
      rewrite_list(key, exec)
    end
    local days = {}
    for _, change in ipairs(plan.usage) do
      local key, field, value, day, model = change[1], change[2], change[3], change[4], change[5]
      if tonumber(value) ~= 0 then
        if string.sub(field, -5) == '\\0cost' then
          redis.call('HINCRBYFLOAT', key, field, negated(value))
        else
          redis.call('HINCRBY', key, field, negated(value))
        end
      end
      days[day] = days[day] or {}
      days[day][model] = true
    end
    for day, models in pairs(days) do
      local key = p .. ':usage:d:' .. day
      for model in pairs(models) do
        if (tonumber(redis.call('HGET', key, model .. '\\0calls')) or 0) <= 0 then
          redis.call('HDEL', key, model .. '\\0calls', model .. '\\0prompt',
                     model .. '\\0completion', model .. '\\0cost')
        end
      end
      if redis.call('HLEN', key) == 0 then
        redis.call('DEL', key)
        redis.call('ZREM', p .. ':usage:days', day)
      end
    end
    for _, tag in ipairs({'xr', 'xb', 'xv', 'xn', 'xl', 'xc', 'usage:x', 'lease', 'held'}) do
      redis.call('DEL', p .. ':' .. tag .. x)
    end
    redis.call('ZREM', p .. ':executions', exec)
    redis.call('ZREM', p .. ':touched', exec)
  end
  return deleted
elseif op == 'nodes' then
  local exec = ARGV[3]
  local x = ':' .. exec
  local xr, xb, xv, xc = p .. ':xr' .. x, p .. ':xb' .. x, p .. ':xv' .. x, p .. ':xc' .. x
  local problem = wrong(p .. ':executions', 'zset') or wrong(p .. ':touched', 'zset')
    or wrong(p .. ':usage:days', 'zset') or wrong(xr, 'hash') or wrong(xb, 'hash')
    or wrong(xv, 'zset') or wrong(p .. ':xn' .. x, 'zset') or wrong(p .. ':xl' .. x, 'hash')
    or wrong(xc, 'string') or wrong(p .. ':usage:x' .. x, 'hash')
  if problem then
    return damaged(problem)
  end
  local function counters(key, group)
    problem = problem or wrong(key, 'hash')
    for _, counter in ipairs({'calls', 'prompt', 'completion', 'cost'}) do
      if not problem and not tonumber(redis.call('HGET', key, group .. counter) or '0') then
        problem = key .. ' holds a field that is not a counter'
      end
    end
  end
  -- Read and check everything first: the versions of each named node, from its list.
  local named, nodes, gone, vids, changes = {}, {}, {}, {}, {}
  for i = 4, #ARGV do
    local node = ARGV[i]
    if not named[node] and redis.call('ZSCORE', p .. ':xn' .. x, node) then
      named[node] = true
      nodes[#nodes + 1] = node
      local list = p .. ':n:' .. node
      problem = problem or wrong(list, 'list')
      if problem then
        break
      end
      for _, entry in ipairs(redis.call('LRANGE', list, 0, -1)) do
        local vid, owned = split(entry)
        if owned == exec and not gone[vid] then
          gone[vid] = true
          vids[#vids + 1] = vid
          local head = redis.call('HGET', xr, vid)
          local use = head and usage_of(head)
          if use then
            local groups = {
              {p .. ':usage:x' .. x, use.day .. '\0' .. use.model .. '\0'},
              {p .. ':usage:d:' .. use.day, use.model .. '\0'},
            }
            for _, group in ipairs(groups) do
              counters(group[1], group[2])
              changes[#changes + 1] = {group[1], group[2], use}
            end
          end
        end
      end
    end
  end
  if problem then
    return damaged(problem)
  end
  if #nodes == 0 then
    return 0
  end
  local deleted = 0
  for _, vid in ipairs(vids) do
    deleted = deleted + redis.call('HDEL', xr, vid)
    redis.call('HDEL', xb, vid)
    redis.call('ZREM', xv, vid)
  end
  for _, node in ipairs(nodes) do
    redis.call('ZREM', p .. ':xn' .. x, node)
    redis.call('HDEL', p .. ':xl' .. x, node)
    rewrite_list(p .. ':n:' .. node, exec)
  end
  local touched, days = {}, {}
  for _, change in ipairs(changes) do
    local key, group, use = change[1], change[2], change[3]
    redis.call('HINCRBY', key, group .. 'calls', -1)
    for _, counter in ipairs({'prompt', 'completion'}) do
      if use[counter] and tonumber(use[counter]) ~= 0 then
        redis.call('HINCRBY', key, group .. counter, negated(use[counter]))
      end
    end
    if use.cost and tonumber(use.cost) ~= 0 then
      redis.call('HINCRBYFLOAT', key, group .. 'cost', negated(use.cost))
    end
    touched[key] = touched[key] or {}
    touched[key][group] = true
    days[use.day] = true
  end
  for key, groups in pairs(touched) do
    for group in pairs(groups) do
      if (tonumber(redis.call('HGET', key, group .. 'calls')) or 0) <= 0 then
        redis.call('HDEL', key, group .. 'calls', group .. 'prompt', group .. 'completion',
                   group .. 'cost')
      end
    end
  end
  for day in pairs(days) do
    if redis.call('EXISTS', p .. ':usage:d:' .. day) == 0 then
      redis.call('ZREM', p .. ':usage:days', day)
    end
  end
  if redis.call('EXISTS', xr) == 0 then
    -- nothing of the execution is left: it goes as a whole, but for its lease
    for _, tag in ipairs({'xr', 'xb', 'xv', 'xn', 'xl', 'xc', 'usage:x'}) do
      redis.call('DEL', p .. ':' .. tag .. x)
    end
    redis.call('ZREM', p .. ':executions', exec)
    redis.call('ZREM', p .. ':touched', exec)
    return deleted
  end
  local latest = redis.call('GET', xc)
  if latest and gone[latest] then
    local newest, total = false, redis.call('ZCARD', xv)
    for start = 0, total - 1, 100 do
      for _, vid in ipairs(redis.call('ZREVRANGE', xv, start, start + 99)) do
        if redis.call('HEXISTS', xb, vid) == 1 then
          newest = vid
          break
        end
      end
      if newest then
        break
      end
    end
    if newest then
      redis.call('SET', xc, newest, 'KEEPTTL')
    else
      redis.call('DEL', xc)
    end
  end
  return deleted
elseif op == 'drop' then
  local x = ':' .. ARGV[3]
  local keep = tonumber(ARGV[4])
  local problem = wrong(p .. ':xr' .. x, 'hash') or wrong(p .. ':xb' .. x, 'hash')
    or wrong(p .. ':xv' .. x, 'zset') or wrong(p .. ':xc' .. x, 'string')
  if problem then
    return damaged(problem)
  end
  local blobs = {}
  for _, vid in ipairs(redis.call('HKEYS', p .. ':xb' .. x)) do
    blobs[vid] = true
  end
  local checkpointed = {}
  for _, vid in ipairs(redis.call('ZRANGE', p .. ':xv' .. x, 0, -1)) do
    if blobs[vid] then
      checkpointed[#checkpointed + 1] = vid
    end
  end
  local dropped = 0
  for i = 1, #checkpointed - keep do
    local vid = checkpointed[i]
    local head = redis.call('HGET', p .. ':xr' .. x, vid)
    if head and #head > 4 then
      redis.call('HSET', p .. ':xr' .. x, vid, string.sub(head, 1, -5) .. '\\255\\255\\255\\255')
    end
    dropped = dropped + redis.call('HDEL', p .. ':xb' .. x, vid)
  end
  if keep > 0 and #checkpointed > 0 then
    local newest = checkpointed[#checkpointed]
    if redis.call('GET', p .. ':xc' .. x) ~= newest then
      redis.call('SET', p .. ':xc' .. x, newest, 'KEEPTTL')
    end
  else
    redis.call('DEL', p .. ':xc' .. x)
  end
  return dropped
end
return redis.error_reply('livingai: unknown retention operation ' .. tostring(op))
""",
)

RETAIN_EXECUTIONS_PER_CALL = 100  # a script call blocks the server: delete in bites
RETAIN_NODES_PER_CALL = 100

Arg = str | bytes | int


def append_args(
    prefix: str,
    ttl_seconds: int | None,
    records: Sequence[NodeRecord],
    fences: Mapping[str, int] | None = None,
) -> list[Arg]:
    """The APPEND script's arguments for a batch. A checkpoint goes as its own argument,
    not copied into the packed record: the bytes are sent as they are."""
    fenced = [arg for pair in (fences or {}).items() for arg in pair]
    args: list[Arg] = [prefix, ttl_seconds or 0, 4 + len(fenced), *fenced]
    for record in records:
        blob = record.checkpoint
        args += (
            record.version_id,
            record.node_id,
            record.execution_id,
            b"0" if blob is None else b"1",
            pack(record),
            b"" if blob is None else blob,
            *_usage_args(record),
        )
    return args


def _usage_args(record: NodeRecord) -> tuple[Arg, ...]:
    """model, prompt tokens, completion tokens, cost and the day it was created: ""
    for none each, and all "" for a version without usage."""
    if not has_usage(record):
        return ("", "", "", "", "")
    numbers = (record.prompt_tokens, record.completion_tokens, record.cost)
    texts = ["" if n is None else repr(n) for n in numbers]
    return (record.model or "", *texts, record.created_at[:10])


STRIDE = 11  # APPEND arguments per record


def owner_of(args: Sequence[Arg], arg: bytes) -> str:
    """The node id of the record whose APPEND argument `arg` is (see append_args)."""
    start = int(args[2]) - 1  # the script's index counts from 1
    index = next(i for i, value in enumerate(args) if value is arg)
    return str(args[start + (index - start) // STRIDE * STRIDE + 1])


FENCED = "livingai: fenced"  # a fenced execution of the batch lost its lease


# -- packed records ---------------------------------------------------------------------
#
# FORMAT, then each column of NodeRecord but the checkpoint, in order, as a 4-byte
# big-endian length and its UTF-8 text (numbers as decimal text), or the length
# 0xFFFFFFFF alone for None: None and "" stay distinct. Last comes the checkpoint's length
# (or 0xFFFFFFFF: none); its bytes are kept apart, in `xb:{x}`, and checked against that
# length when read. Format 1 had the columns up to `body` only (no model and usage).

_LENGTH = struct.Struct(">I")
_NONE = 0xFFFFFFFF
_NONE_HEADER = _LENGTH.pack(_NONE)
_REQUIRED = ("version_id", "node_id", "execution_id", "type", "status", "created_at", "body")
_STRINGS = RECORD_COLUMNS[:-1]  # every column but the checkpoint, in the same order
_FIELDS = {1: _STRINGS[: _STRINGS.index("body") + 1], 2: _STRINGS}  # by format


def pack(record: NodeRecord) -> bytes:
    """The record without its checkpoint's bytes (see above)."""
    parts: list[bytes] = [bytes((FORMAT,))]
    for name in _STRINGS:
        value: object = getattr(record, name)
        if value is None:
            parts.append(_NONE_HEADER)
        else:
            data = (value if isinstance(value, str) else repr(value)).encode()
            parts += (_LENGTH.pack(len(data)), data)
    blob = record.checkpoint
    parts.append(_NONE_HEADER if blob is None else _LENGTH.pack(len(blob)))
    return b"".join(parts)


def unpack(data: bytes, checkpoint: bytes | None) -> NodeRecord:
    """A packed record and its checkpoint; ValueError when they are not one."""
    fields = _FIELDS.get(data[0]) if data else None
    if fields is None:
        first = data[0] if data else None
        raise ValueError(f"not a livingai record of format 1 or 2 (first byte {first!r})")
    pos = 1
    values: list[bytes | None] = []
    for _ in fields:
        if pos + 4 > len(data):
            raise ValueError("truncated record")
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += 4
        if length == _NONE:
            values.append(None)
            continue
        if pos + length > len(data):
            raise ValueError("truncated record")
        values.append(data[pos : pos + length])
        pos += length
    if pos + 4 != len(data):
        raise ValueError("record has a bad length")
    (blob_length,) = _LENGTH.unpack_from(data, pos)
    texts = [None if value is None else value.decode() for value in values]
    for name, text in zip(fields, texts, strict=True):
        if text is None and name in _REQUIRED:
            raise ValueError(f"record has no {name}")
    texts += [None] * (len(_STRINGS) - len(fields))  # format 1: no usage
    if blob_length == _NONE and checkpoint is not None:
        problem = f"a {len(checkpoint)}-byte checkpoint is stored for a version saved without one"
    elif blob_length != _NONE and (checkpoint is None or len(checkpoint) != blob_length):
        got = "none is" if checkpoint is None else f"{len(checkpoint)} bytes are"
        problem = f"its checkpoint was {blob_length} bytes and {got} stored"
    else:
        return NodeRecord.from_row((*texts, checkpoint))
    raise BlobMismatch(NodeRecord.from_row((*texts, None)), problem)


class BlobMismatch(ValueError):
    """A record whose head reads but whose checkpoint is not the one it was saved with;
    `record` is the version without it."""

    def __init__(self, record: NodeRecord, problem: str) -> None:
        super().__init__(f"node {record.node_id} (version {record.version_id}): {problem}")
        self.record = record


# -- the wire -------------------------------------------------------------------------

PIECE_BYTES = 256 * 1024


def pieces(chunks: Sequence[bytes], size: int = PIECE_BYTES) -> Iterator[list[bytes | memoryview]]:
    """A packed command regrouped into pieces of at most `size` bytes, large arguments
    sliced without copying: each piece is one write to the socket."""
    piece: list[bytes | memoryview] = []
    filled = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            part = view[: size - filled]
            piece.append(part)
            filled += len(part)
            view = view[len(part) :]
            if filled == size:
                yield piece
                piece, filled = [], 0
    if piece:
        yield piece


# -- names ---------------------------------------------------------------------


def scan_pattern(prefix: str, tag: str = "") -> str:
    """A SCAN MATCH pattern for every key under `prefix` (and `tag`, as `lease:`), glob
    characters escaped."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return f"{escaped}:{tag}*"


def client_name(prefix: str) -> str:
    """The CLIENT SETNAME of the store's connections: printable ASCII, no spaces."""
    name = "".join(c if "!" <= c <= "~" else "_" for c in prefix)
    return f"livingai:{name}"
