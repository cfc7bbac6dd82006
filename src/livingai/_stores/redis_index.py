"""RedisStore's index of executions: its Lua, shared by the scripts that keep it, and the
script that reads it (no I/O here). See redis_keys for the whole layout.

Each execution has an entry, `{p}:ie` field `<execution id>` = "<started_at>\\0<status>\\0
<agent>" (status "" for an execution that is not a run; ExecutionEntry), and the member
"<started_at>\\0<execution id>" (score 0: ordered by its bytes, which is the order of
(started_at, execution id), since a timestamp holds no NUL) in each zset of what it is:

    {p}:ix                   every execution
    {p}:ia:{agent}           its agent ("" for none, and for an execution that is not a run)
    {p}:is:{status}          a run's status (PENDING, RUNNING, SUCCESS, FAILED)
    {p}:isa:{status}:{agent} both

APPEND keeps them in the script that stores the versions (from what Python worked out of
each run record: its status and agent); RETAIN drops an execution's entry with it, or
works it out again from the versions left (`ix_of_log`). A page is one ZREVRANGEBYLEX on
the one zset that matches its filters, between its time bounds and below its cursor, with
a LIMIT: it reads what it returns, never every execution. Open runs are is:PENDING and
is:RUNNING.

Stores written before the index existed have no entries: `{p}:ixv` = "1" says the index
holds every execution. Until it does, the first index read runs BACKFILL calls, each
indexing at most BACKFILL_CHUNK executions (by their first version's seq, from the
`executions` zset) and keeping its progress in `{p}:ixb`, so that a backfill cut short is
taken up where it stopped, by any process. Meanwhile APPEND indexes an execution it
finds unindexed from its log too, so none is ever indexed wrong.
"""

from __future__ import annotations

from .._core.listing import ExecutionEntry, PageQuery

BACKFILL_CHUNK = 500  # executions a BACKFILL call indexes at most: each call stays short

# In a cluster every script runs on the slot of its bucket, KEYS[1]: a slot being
# migrated refuses a command on two keys it does not both hold (ASK, TRYAGAIN), so this
# read, first, stops the script before it writes anything anywhere but on a stable slot.
PROBE = r"""
if #KEYS > 0 then
  redis.call('EXISTS', KEYS[1], KEYS[1] .. ':probe')
end
"""

LIBRARY = r"""
-- The index of executions (redis_index.py).
local function ix_decode(text)
  local a = text and string.find(text, '\0', 1, true)
  local b = a and string.find(text, '\0', a + 1, true)
  if not b then
    return nil
  end
  return {started = string.sub(text, 1, a - 1), status = string.sub(text, a + 1, b - 1),
          agent = string.sub(text, b + 1)}
end
local function ix_zsets(p, e)
  local keys = {p .. ':ix', p .. ':ia:' .. e.agent}
  if e.status ~= '' then
    keys[3] = p .. ':is:' .. e.status
    keys[4] = p .. ':isa:' .. e.status .. ':' .. e.agent
  end
  return keys
end
local function ix_same(a, b)
  return a and b and a.started == b.started and a.status == b.status and a.agent == b.agent
end
local function ix_set(p, exec, old, new)
  -- the execution's entry goes from `old` to `new` (either nil: none)
  if ix_same(old, new) then
    return
  end
  local om = old and (old.started .. '\0' .. exec)
  local nm = new and (new.started .. '\0' .. exec)
  local gone = {}
  if old then
    for _, key in ipairs(ix_zsets(p, old)) do
      gone[key] = true
    end
  end
  if new then
    for _, key in ipairs(ix_zsets(p, new)) do
      if gone[key] and om == nm then
        gone[key] = nil
      else
        redis.call('ZADD', key, 0, nm)
      end
    end
    redis.call('HSET', p .. ':ie', exec, new.started .. '\0' .. new.status .. '\0' .. new.agent)
  else
    redis.call('HDEL', p .. ':ie', exec)
  end
  for key in pairs(gone) do
    redis.call('ZREM', key, om)
  end
end
local function ix_columns(head, count)
  -- the first `count` columns of a packed record (redis_keys.pack); false for None
  local cols, pos = {}, 2
  while #cols < count and pos + 3 <= #head do
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
  return cols
end
local function ix_agent(body)
  -- what listing.agent_of says of a run record's body
  local ok, doc = pcall(cjson.decode, body)
  if not ok or type(doc) ~= 'table' then
    return ''
  end
  local meta = doc['metadata']
  if type(meta) ~= 'table' then
    return ''
  end
  local agent = meta['agent']
  if type(agent) == 'string' then
    return agent
  end
  return ''
end
local function ix_of_log(p, exec)
  -- the entry of an execution worked out from its versions (ExecutionEntry.of): its
  -- first version's created_at, its run record's latest version's status and agent
  local x = ':' .. exec
  local first = redis.call('ZRANGE', p .. ':xv' .. x, 0, 0)[1]
  local head = first and redis.call('HGET', p .. ':xr' .. x, first)
  if not head then
    return nil
  end
  local e = {started = ix_columns(head, 7)[7] or '', status = '', agent = ''}
  local vid = redis.call('HGET', p .. ':xl' .. x, exec .. '/run')
  local run = vid and redis.call('HGET', p .. ':xr' .. x, vid)
  if run then
    local cols = ix_columns(run, 9)
    e.status = cols[6] or ''
    e.agent = ix_agent(cols[9] or '')
  end
  return e
end
local function ix_wrong(p, old, new, wrong, seen)
  -- the first zset ix_set(p, exec, old, new) writes that holds another type, or false;
  -- `seen` holds the keys already checked (a batch's executions share most of them)
  if ix_same(old, new) then
    return false
  end
  local olds, news = {}, {}
  for _, key in ipairs(old and ix_zsets(p, old) or {}) do
    olds[key] = true
  end
  for _, key in ipairs(new and ix_zsets(p, new) or {}) do
    news[key] = true
  end
  local moved = not (old and new and old.started == new.started)
  for _, keys in ipairs({{olds, news}, {news, olds}}) do
    for key in pairs(keys[1]) do
      if (moved or not keys[2][key]) and not seen[key] then
        seen[key] = true
        local problem = wrong(key, 'zset')
        if problem then
          return problem
        end
      end
    end
  end
  return false
end
"""

INDEX_TEXT = (
    r"""
-- livingai RedisStore index reads (layout 1). ARGV: prefix, operation, "1" to hide
-- executions whose keys expired (a store with a TTL) or "", then:
-- 'page': the zset (ix, ia:<agent>, is:<status>, isa:<status>:<agent>), the highest and
--   lowest member as ZREVRANGEBYLEX takes them, how many; returns execution id and entry
--   pairs, newest first;
-- 'open': the same pairs for the members of is:PENDING and is:RUNNING;
-- 'backfill': how many executions to index at most; returns {1 when the index holds
--   every execution, how many this call indexed}.
local p, op, hide = ARGV[1], ARGV[2], ARGV[3] == '1'
"""
    + PROBE
    + LIBRARY
    + r"""
local function alive(exec)
  return not hide or redis.call('EXISTS', p .. ':xr:' .. exec) == 1
end
local function owner(member)
  return string.sub(member, string.find(member, '\0', 1, true) + 1)
end
if op == 'page' then
  local key, high, low, want = p .. ':' .. ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
  local out, offset = {}, 0
  while true do
    local members = redis.call('ZREVRANGEBYLEX', key, high, low, 'LIMIT', offset, want)
    for _, member in ipairs(members) do
      local exec = owner(member)
      local text = alive(exec) and redis.call('HGET', p .. ':ie', exec)
      if text then
        out[#out + 1] = exec
        out[#out + 1] = text
      end
    end
    if #out >= 2 * want or #members < want then
      return out
    end
    offset = offset + want
  end
elseif op == 'open' then
  local out = {}
  for _, status in ipairs({'PENDING', 'RUNNING'}) do
    for _, member in ipairs(redis.call('ZRANGE', p .. ':is:' .. status, 0, -1)) do
      local exec = owner(member)
      local text = alive(exec) and redis.call('HGET', p .. ':ie', exec)
      if text then
        out[#out + 1] = exec
        out[#out + 1] = text
      end
    end
  end
  return out
elseif op == 'backfill' then
  if redis.call('GET', p .. ':ixv') == '1' then
    return {1, 0}
  end
  local chunk = tonumber(ARGV[4])
  local from = redis.call('GET', p .. ':ixb')
  local low = from and ('(' .. from) or '-inf'
  local found = redis.call('ZRANGEBYSCORE', p .. ':executions', low, '+inf', 'WITHSCORES',
                           'LIMIT', 0, chunk)
  local indexed = 0
  for j = 1, #found, 2 do
    local exec = found[j]
    if redis.call('HEXISTS', p .. ':ie', exec) == 0 then
      local entry = ix_of_log(p, exec)
      if entry then
        ix_set(p, exec, nil, entry)
        indexed = indexed + 1
      end
    end
  end
  if #found < 2 * chunk then
    redis.call('SET', p .. ':ixv', '1')
    redis.call('DEL', p .. ':ixb')
    return {1, indexed}
  end
  redis.call('SET', p .. ':ixb', found[#found])
  return {0, indexed}
end
return redis.error_reply('livingai: unknown index operation ' .. tostring(op))
"""
)

CONFIRM_TEXT = (
    r"""
-- livingai RedisStore acknowledgement (layout 1). ARGV: prefix, then an execution id and
-- a version id per version of a batch. Returns 1 when every one is stored here, after a
-- write (the seq counter moves on), so that a WAIT after it on the same connection
-- counts the replicas that hold the batch; 0 when one is not (this primary lost it).
local p = ARGV[1]
"""
    + PROBE
    + r"""
for i = 2, #ARGV, 2 do
  if redis.call('HEXISTS', p .. ':xr:' .. ARGV[i], ARGV[i + 1]) == 0 then
    return 0
  end
end
redis.call('INCR', p .. ':seq')
return 1
"""
)


def zset_of(query: PageQuery) -> str:
    """The one zset whose members match the query's status and agent."""
    if query.status is not None and query.agent is not None:
        return f"isa:{query.status}:{query.agent}"
    if query.status is not None:
        return f"is:{query.status}"
    if query.agent is not None:
        return f"ia:{query.agent}"
    return "ix"


def bounds(query: PageQuery) -> tuple[str, str]:
    """ZREVRANGEBYLEX's highest and lowest member for the query: below both its cursor
    and `until`, from `since` on."""
    highs = []
    after = query.after
    if after is not None:
        highs.append(f"{after[0]}\0{after[1]}")
    if query.until is not None:
        highs.append(query.until)
    high = "(" + min(highs) if highs else "+"
    low = "[" + query.since if query.since is not None else "-"
    return high, low


def entry(execution_id: bytes, text: bytes) -> ExecutionEntry:
    """An entry from its `ie` field; ValueError when it is not one."""
    started, status, agent = text.decode().split("\0", 2)
    return ExecutionEntry(execution_id.decode(), started, agent, status or None)
