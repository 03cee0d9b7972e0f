"""Lua scripts of the task queue: every state change of a task is one atomic script.

Keys (prefix ``P``, DESIGN.md section 3, plus two indexes): ``P q:{model}`` ZSET of queued ids,
``P task:{id}`` HASH, ``P inflight:{model}`` ZSET id -> lease deadline, ``P idem:{key}`` id,
``P dl:{model}`` ZSET id -> deadline of queued tasks (so timeouts are found without a scan),
``P pending:{model}`` HASH priority -> queued count (the ``pending`` metric), ``P seq`` arrival
counter, ``P epoch`` time origin of aged scores, ``P finished`` ZSET id -> finish time of the tasks
with a final status (so ``TRIM`` bounds their number as well as their age). Task keys are derived
inside the scripts from the prefix, so the queue targets a single Redis (not Redis Cluster). Times
are Unix seconds (floats) passed by the caller.

The score orders the queue (lowest first). Its rule is ``edgesplit.queueing.QueueOrder``, defined
once for the queue, the simulator and the cloud gate: the submit script concatenates its Lua function
``queue_score`` (``QueueOrder.LUA``) and takes its arguments (``QueueOrder.lua_args``) as the last two
ARGV. Strict priorities (``aging_s`` = 0, the paper): ``priority * 2^40 + seq``; aging: ``priority *
aging_s + (arrival - epoch)``, a static score that orders by effective priority at any time.
"""

from __future__ import annotations

from edgesplit.queueing import QueueOrder

# Redis >= 7 script flags (the first line). At ``maxmemory`` (policy ``noeviction``) a script without
# flags would run and fail at its first write that may grow memory, after its earlier commands: a
# task half moved. So a submit is refused whole when Redis is full (a 503: not accepted), and every
# other script, which moves accepted tasks along and mostly frees memory (a finished task drops its
# input), always runs whole.
REFUSED_WHEN_FULL = "#!lua"
ALWAYS = "#!lua flags=allow-oom"

# The one way a queued task ends ``expired`` (already off the queue ZSET): CLAIM, the batch claim
# (``batching.CLAIM_BATCH``) and EXPIRE prepend it. ``now_s``: the caller's ARGV time string.
# ``expired`` and ``orphans`` collect the ids a claim reports (``report``).
QUEUED_ENDINGS = """
local expired, orphans = {}, {}
local function expire_queued(p, key, id, now_s, ttl)
  redis.call('HSET', key, 'status', 'expired', 'finished', now_s, 'error', 'timed out while queued')
  redis.call('HDEL', key, 'input')
  redis.call('EXPIRE', key, ttl)
  redis.call('ZADD', p .. 'finished', tonumber(now_s), id)
  redis.call('PUBLISH', p .. 'done', id)
  expired[#expired + 1] = id
end
local function report(head)
  head[#head + 1] = tostring(#expired)
  for _, e in ipairs(expired) do head[#head + 1] = e end
  for _, o in ipairs(orphans) do head[#head + 1] = o end
  return head
end
"""

# KEYS: q, dl, pending, seq, epoch, idem-or-empty, inflight
# ARGV: prefix, id, model, priority, now, deadline, max_queue, input, idem_ttl, fingerprint, timeout,
#       aging, shift (QueueOrder.lua_args()), claim token ('' for none), lease_s
# With a claim token (a runner of the caller's process starts the task at once: ``TaskQueue.submit``),
# a task that a claim would take next anyway (the queue is empty, or its head comes after this task
# in ``QueueOrder``) is claimed in the same script, as CLAIM would: it goes to ``inflight`` under
# that token and lease, never to ``q`` (no pending count, no ``new`` message); returns
# {'claimed', id}. Otherwise it is queued as usual.
SUBMIT = REFUSED_WHEN_FULL + QueueOrder.LUA + """
local p = ARGV[1]
local id = ARGV[2]
if KEYS[6] ~= '' then
  local old = redis.call('GET', KEYS[6])
  if old then
    local fp = redis.call('HGET', p .. 'task:' .. old, 'fingerprint')
    if fp and fp ~= ARGV[10] then return {'conflict', old} end
    return {'duplicate', old}
  end
end
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[7]) then return {'full', tostring(n)} end
local score = queue_score(tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[12]), tonumber(ARGV[13]),
                          KEYS[5], KEYS[4])
local key = p .. 'task:' .. id
redis.call('HSET', key, 'id', id, 'model', ARGV[3], 'priority', ARGV[4],
  'score', string.format('%.17g', score), 'status', 'queued', 'submitted', ARGV[5],
  'deadline', ARGV[6], 'timeout', ARGV[11], 'input', ARGV[8], 'attempts', '0', 'fingerprint', ARGV[10])
if KEYS[6] ~= '' then redis.call('SET', KEYS[6], id, 'EX', tonumber(ARGV[9])) end
if (ARGV[14] or '') ~= '' then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #head == 0 or tonumber(head[2]) > score then
    redis.call('HSET', key, 'status', 'running', 'lease', ARGV[14], 'claimed', ARGV[5], 'attempts', '1')
    redis.call('ZADD', KEYS[7], tonumber(ARGV[5]) + tonumber(ARGV[15]), id)
    return {'claimed', id, '0'}
  end
end
redis.call('ZADD', KEYS[1], score, id)
redis.call('ZADD', KEYS[2], tonumber(ARGV[6]), id)
local c = redis.call('HINCRBY', KEYS[3], ARGV[4], 1)
redis.call('PUBLISH', p .. 'new:' .. ARGV[3], id)
return {'ok', id, tostring(c)}
"""

# KEYS: q, inflight, dl, pending
# ARGV: prefix, now, lease_s, token, ttl
# Returns {} or {id, priority, submitted, deadline, attempts, input, n_expired, expired ids..., orphan
# ids...}: tasks whose deadline passed are marked expired on the way, and queued ids without a task
# record (orphans: never written by edgesplit's own scripts) are dropped; both are reported so the
# caller can count them. ``id`` is '' when no task was claimed.
CLAIM = ALWAYS + QUEUED_ENDINGS + """
local p = ARGV[1]
local now = tonumber(ARGV[2])
for _ = 1, 1000 do
  local top = redis.call('ZPOPMIN', KEYS[1])
  if #top == 0 then break end
  local id = top[1]
  local key = p .. 'task:' .. id
  local f = redis.call('HMGET', key, 'priority', 'submitted', 'deadline', 'attempts', 'input')
  redis.call('ZREM', KEYS[3], id)
  if f[1] then
    redis.call('HINCRBY', KEYS[4], f[1], -1)
    if tonumber(f[3]) <= now then
      expire_queued(p, key, id, ARGV[2], tonumber(ARGV[5]))
    else
      local attempts = redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HSET', key, 'status', 'running', 'lease', ARGV[4], 'claimed', ARGV[2])
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
      return report({id, f[1], f[2], f[3], tostring(attempts), f[5]})
    end
  else
    orphans[#orphans + 1] = id
  end
end
if #expired + #orphans > 0 then return report({'', '', '', '', '', ''}) end
return {}
"""

# KEYS: inflight   ARGV: prefix, id, token, now, lease_s
RENEW = ALWAYS + """
local key = ARGV[1] .. 'task:' .. ARGV[2]
if redis.call('HGET', key, 'lease') ~= ARGV[3] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[4]) + tonumber(ARGV[5]), ARGV[2])
return 1
"""

# KEYS: inflight   ARGV: prefix, id, token, status, now, ttl, field1, value1, ...
# Returns 0 (lease lost) or the finished task hash as HGETALL gives it. Idempotent for the attempt that
# finished the task (``finished_by``): a finish sent again after a timeout whose first copy did run
# (Redis stalled, then executed both) gets the record back, instead of looking like a stale attempt.
FINISH = ALWAYS + """
local p = ARGV[1]
local key = p .. 'task:' .. ARGV[2]
if redis.call('HGET', key, 'lease') ~= ARGV[3] then
  if redis.call('HGET', key, 'finished_by') == ARGV[3] then return redis.call('HGETALL', key) end
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HSET', key, 'status', ARGV[4], 'finished', ARGV[5], 'finished_by', ARGV[3])
for i = 7, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
redis.call('HDEL', key, 'lease', 'input')
redis.call('EXPIRE', key, tonumber(ARGV[6]))
redis.call('ZADD', p .. 'finished', tonumber(ARGV[5]), ARGV[2])
redis.call('PUBLISH', p .. 'done', ARGV[2])
return redis.call('HGETALL', key)
"""

# Put one running task back in its queue with its original score (lease expired, or given back).
_REQUEUE_ONE = """
local function requeue(p, id, q, dl, pending, inflight, max_attempts, now, ttl, reason)
  local key = p .. 'task:' .. id
  redis.call('ZREM', inflight, id)
  local f = redis.call('HMGET', key, 'priority', 'score', 'deadline', 'attempts', 'model', 'status')
  if not f[1] or f[6] ~= 'running' then return 0 end
  redis.call('HDEL', key, 'lease')
  if tonumber(f[4]) >= max_attempts then
    redis.call('HSET', key, 'status', 'failed', 'finished', tostring(now),
      'error', reason .. ' after ' .. f[4] .. ' attempts')
    redis.call('HDEL', key, 'input')
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', p .. 'finished', now, id)
    redis.call('PUBLISH', p .. 'done', id)
    return 0
  end
  redis.call('HSET', key, 'status', 'queued')
  redis.call('ZADD', q, f[2], id)
  redis.call('ZADD', dl, tonumber(f[3]), id)
  redis.call('HINCRBY', pending, f[1], 1)
  redis.call('PUBLISH', p .. 'new:' .. f[5], id)
  return 1
end
"""

# KEYS: inflight, q, dl, pending   ARGV: prefix, now, max_attempts, ttl
REAP = ALWAYS + _REQUEUE_ONE + """
local now = tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
local n = 0
for _, id in ipairs(ids) do
  n = n + requeue(ARGV[1], id, KEYS[2], KEYS[3], KEYS[4], KEYS[1], tonumber(ARGV[3]), now, tonumber(ARGV[4]),
                  'lease expired')
end
return n
"""

# KEYS: inflight, q, dl, pending   ARGV: prefix, id, token, now, ttl
GIVE_BACK = ALWAYS + _REQUEUE_ONE + """
if redis.call('HGET', ARGV[1] .. 'task:' .. ARGV[2], 'lease') ~= ARGV[3] then return 0 end
redis.call('HINCRBY', ARGV[1] .. 'task:' .. ARGV[2], 'attempts', -1)
return requeue(ARGV[1], ARGV[2], KEYS[2], KEYS[3], KEYS[4], KEYS[1], 1e18, tonumber(ARGV[4]),
               tonumber(ARGV[5]), 'given back')
"""

# KEYS: dl, q, pending   ARGV: prefix, now, ttl   Returns the ids that expired while queued.
EXPIRE = ALWAYS + QUEUED_ENDINGS + """
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]), 'LIMIT', 0, 1000)
for _, id in ipairs(ids) do
  local key = p .. 'task:' .. id
  redis.call('ZREM', KEYS[1], id)
  if redis.call('ZREM', KEYS[2], id) == 1 then
    local prio = redis.call('HGET', key, 'priority')
    if prio then redis.call('HINCRBY', KEYS[3], prio, -1) end
    expire_queued(p, key, id, ARGV[2], tonumber(ARGV[3]))
  end
end
return ids
"""

# Cancel one task, queued or running. KEYS: q, inflight, dl, pending   ARGV: prefix, id, now, ttl
# Returns {'cancelled', id} or {'final', status} (it already had a final status) or {'missing'}.
# A running task loses its lease, so its attempt can neither renew nor finish: the worker drops it at
# its next check and counts its late result as stale.
CANCEL = ALWAYS + """
local p = ARGV[1]
local id = ARGV[2]
local key = p .. 'task:' .. id
local f = redis.call('HMGET', key, 'status', 'priority')
if not f[1] then return {'missing'} end
if f[1] ~= 'queued' and f[1] ~= 'running' then return {'final', f[1]} end
if redis.call('ZREM', KEYS[1], id) == 1 then redis.call('HINCRBY', KEYS[4], f[2], -1) end
redis.call('ZREM', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
redis.call('HSET', key, 'status', 'cancelled', 'finished', ARGV[3], 'error', 'cancelled by the client')
redis.call('HDEL', key, 'lease', 'input')
redis.call('EXPIRE', key, tonumber(ARGV[4]))
redis.call('ZADD', p .. 'finished', tonumber(ARGV[3]), id)
redis.call('PUBLISH', p .. 'done', id)
return {'cancelled', id}
"""

# Retention of finished tasks: keep at most ``max_finished`` (the oldest records beyond go now) and
# forget index entries older than the TTL (their records expired by themselves).
# KEYS: finished   ARGV: prefix, now, ttl, max_finished   Returns how many records were deleted.
TRIM = ALWAYS + """
local p = ARGV[1]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
if extra <= 0 then return 0 end
local ids = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
for _, id in ipairs(ids) do redis.call('DEL', p .. 'task:' .. id) end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
return #ids
"""
