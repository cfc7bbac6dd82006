"""RedisStore's retention script, RETAIN: the only one that deletes or rewrites (no I/O
here). The layout it works on is described in redis_keys; it keeps the index of
redis_index as it goes.
"""

from __future__ import annotations

from .redis_index import LIBRARY, PROBE
from .redis_keys import Script

RETAIN_EXECUTIONS_PER_CALL = 100  # a script call blocks the server: delete in bites
RETAIN_NODES_PER_CALL = 100

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
-- The index follows (redis_index): 'delete' drops the executions' entries, 'nodes' works
-- the execution's entry out again from the versions left (or drops it with the last).
local p, op = ARGV[1], ARGV[2]
"""
    + PROBE
    + LIBRARY
    + """local function wrong(key, want)
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
    or wrong(p .. ':usage:days', 'zset') or wrong(p .. ':ie', 'hash')
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
      plan.entry = ix_decode(redis.call('HGET', p .. ':ie', exec))
      problem = ix_wrong(p, plan.entry, nil, wrong, {})
    end
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
    redis.call('ZREM', p .. ':leased', exec)
    ix_set(p, exec, plan.entry, nil)
  end
  return deleted
elseif op == 'nodes' then
  local exec = ARGV[3]
  local x = ':' .. exec
  local xr, xb, xv, xc = p .. ':xr' .. x, p .. ':xb' .. x, p .. ':xv' .. x, p .. ':xc' .. x
  local problem = wrong(p .. ':executions', 'zset') or wrong(p .. ':touched', 'zset')
    or wrong(p .. ':usage:days', 'zset') or wrong(xr, 'hash') or wrong(xb, 'hash')
    or wrong(xv, 'zset') or wrong(p .. ':xn' .. x, 'zset') or wrong(p .. ':xl' .. x, 'hash')
    or wrong(xc, 'string') or wrong(p .. ':usage:x' .. x, 'hash') or wrong(p .. ':ie', 'hash')
    or wrong(p .. ':ia:', 'zset')
  local entry = not problem and ix_decode(redis.call('HGET', p .. ':ie', exec))
  problem = problem or ix_wrong(p, entry or nil, nil, wrong, {})
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
    ix_set(p, exec, entry or nil, nil)
    return deleted
  end
  ix_set(p, exec, entry or nil, ix_of_log(p, exec))
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
