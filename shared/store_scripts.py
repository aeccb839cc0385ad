"""Lua scripts behind JobStore and BatchStore. Every status change runs as one script, so a job
and its batch counters move together: counts are exact at every moment, a redelivered chunk
changes nothing twice, and a batch completes exactly once.

Keys are built inside the scripts from the namespace in ARGV[1], as a job's batch is only known
from the job itself; this supports a single Redis (with replicas/Sentinel), not Redis Cluster."""

from __future__ import annotations

from shared.decisions import DECISIONS

# ARGV[1] namespace, ARGV[2] ttl of finished records, ARGV[3] now (ISO time).
_PRELUDE = """
local ns, ttl, now = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local function is_final(s) return s == 'succeeded' or s == 'failed' or s == 'canceled' end

local function move_count(batch, old, new)
  if not batch or batch == '' then return end
  local bkey = ns .. ':batch:' .. batch
  redis.call('HINCRBY', bkey, old, -1)
  redis.call('HINCRBY', bkey, new, 1)
  -- progress time, so that a batch whose work went missing can be noticed (worker/sweeper.py)
  local t = redis.call('TIME')[1]
  redis.call('HSET', bkey, 'touched', t)
  redis.call('ZADD', ns .. ':batches:running', 'XX', t, batch)
end

-- A succeeded job of a batch joins the index of its decision (the `?decision=` filter pages
-- through it in upload order), and a decision other than 'sku' is counted: 'sku' is the rest of
-- `succeeded`, so a result stored before decisions existed reads, and counts, as one.
local function index_decision(batch, id, jkey)
  if batch == '' then return end
  local bkey = ns .. ':batch:' .. batch
  local decision = redis.call('HGET', jkey, 'decision') or 'sku'
  if decision ~= 'sku' then redis.call('HINCRBY', bkey, 'decided:' .. decision, 1) end
  -- a job stored before positions were: found once, in the upgrade's batches only
  local position = redis.call('HGET', jkey, 'position') or redis.call('LPOS', bkey .. ':jobs', id)
  if not position then return end
  local dkey = bkey .. ':decided:' .. decision
  redis.call('ZADD', dkey, position, id)
  redis.call('EXPIRE', dkey, ttl)
end

-- Finish one job (fields: flat list of name, value; must include 'status').
-- Returns its batch id ('' for none), or nil when it was already final or is gone.
local function settle(id, fields)
  local jkey = ns .. ':job:' .. id
  local old = redis.call('HGET', jkey, 'status')
  if not old or is_final(old) then return nil end
  redis.call('HSET', jkey, 'finished_at', now, unpack(fields))
  redis.call('EXPIRE', jkey, ttl)
  redis.call('DEL', ns .. ':image:' .. id)
  redis.call('PUBLISH', ns .. ':done:' .. id, 'done')
  local batch = redis.call('HGET', jkey, 'batch_id') or ''
  local status = redis.call('HGET', jkey, 'status')
  move_count(batch, old, status)
  if status == 'succeeded' then index_decision(batch, id, jkey) end
  if redis.call('DECR', ns .. ':pending') < 0 then redis.call('SET', ns .. ':pending', 0) end
  return batch
end

-- Complete a sealed batch with nothing queued or running; returns 2 if this call did it.
local function maybe_complete(batch)
  local bkey = ns .. ':batch:' .. batch
  local b = redis.call('HMGET', bkey, 'sealed', 'queued', 'running', 'status', 'cancel_requested')
  if b[1] ~= '1' or b[4] == 'completed' or b[4] == 'canceled' then return 1 end
  if tonumber(b[2] or '0') + tonumber(b[3] or '0') > 0 then return 1 end
  redis.call('HSET', bkey, 'status', b[5] == '1' and 'canceled' or 'completed', 'finished_at', now)
  redis.call('ZREM', ns .. ':batches:running', batch)
  -- in the same step, so that a crash before its results are archived cannot lose the archive
  redis.call('ZADD', ns .. ':batches:unarchived', redis.call('TIME')[1], batch)
  redis.call('EXPIRE', bkey, ttl)
  redis.call('EXPIRE', ns .. ':batch:' .. batch .. ':jobs', ttl)
  return 2
end
"""

# ARGV[4] job id, ARGV[5] the claiming task ('<task id>:<retries>'), ARGV[6] '1' when that task
# holds this job alone. Returns {claims, interrupted, crashes}: claims counts every claim (0: the
# job is final or gone, skip it); interrupted is 1 when an earlier holder never finished it —
# except this same task's own retry (after a Redis error) and a chunk that handed it over to run
# alone; crashes counts the interrupted holders that held the job alone, the only ones whose
# interruption may be this image's fault (worker/classifier.py gives up on it after a few).
CLAIM = (
    _PRELUDE
    + """
local jkey = ns .. ':job:' .. ARGV[4]
local status = redis.call('HGET', jkey, 'status')
if status ~= 'queued' and status ~= 'running' then return {0, 0, 0} end
local attempts = redis.call('HINCRBY', jkey, 'attempts', 1)
local held = redis.call('HGET', jkey, 'held_by')
redis.call('HSET', jkey, 'held_by', ARGV[5] .. ':' .. ARGV[6])
local function crashes() return tonumber(redis.call('HGET', jkey, 'crashes') or '0') end
if status == 'running' then
  if held == '' then return {attempts, 0, crashes()} end  -- handed over by a splitting chunk
  local task, try = string.match(ARGV[5], '^(.*):(%d+)$')
  local htask, htry, alone = string.match(held or '', '^(.*):(%d+):([01])$')
  if htask and htask == task and tonumber(htry) < tonumber(try) then
    return {attempts, 0, crashes()}  -- this task's own retry, after a Redis error
  end
  if alone == '1' then redis.call('HINCRBY', jkey, 'crashes', 1) end
  return {attempts, 1, crashes()}  -- redelivered: its holder vanished; run it again
end
redis.call('HSET', jkey, 'status', 'running')
local batch = redis.call('HGET', jkey, 'batch_id')
if batch then
  move_count(batch, 'queued', 'running')
  local bkey = ns .. ':batch:' .. batch
  if redis.call('HGET', bkey, 'status') == 'queued' then
    redis.call('HSET', bkey, 'status', 'running')
  end
end
return {attempts, 0, crashes()}
"""
)

# ARGV[4..] job ids a chunk hands over to run one by one: their next claim is not an interruption.
HAND_OVER = (
    _PRELUDE
    + """
for i = 4, #ARGV do
  local jkey = ns .. ':job:' .. ARGV[i]
  if redis.call('HGET', jkey, 'status') == 'running' then
    redis.call('HSET', jkey, 'held_by', '')
  end
end
return #ARGV - 3
"""
)

# ARGV[4] job id, ARGV[5..] field pairs. Returns {code, duplicate ids settled with it...} where
# code is 0 (already final), 1 (done) or 2 (and its batch completed with it). Duplicates of the
# image in its batch get the same outcome.
FINISH = (
    _PRELUDE
    + """
local id = ARGV[4]
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local batch = settle(id, fields)
if batch == nil then return {0} end
local out = {1}
local dkey = ns .. ':dups:' .. id
for _, dup in ipairs(redis.call('LRANGE', dkey, 0, -1)) do
  if settle(dup, fields) then out[#out + 1] = dup end
end
redis.call('DEL', dkey)
if batch ~= '' then out[1] = maybe_complete(batch) end
return out
"""
)

# Attach a duplicate to its primary, or copy the primary's outcome at once when it already
# finished. Returns 1 when it finished now, else 0.
_ATTACH = """
local function attach(dup, primary)
  local pkey = ns .. ':job:' .. primary
  local p = redis.call('HMGET', pkey, 'status', 'result', 'error', 'model_version', 'decision')
  if is_final(p[1]) then
    local fields = {'status', p[1]}
    if p[2] then fields[#fields + 1] = 'result'; fields[#fields + 1] = p[2] end
    if p[3] then fields[#fields + 1] = 'error'; fields[#fields + 1] = p[3] end
    if p[4] then fields[#fields + 1] = 'model_version'; fields[#fields + 1] = p[4] end
    if p[5] then fields[#fields + 1] = 'decision'; fields[#fields + 1] = p[5] end
    settle(dup, fields)
    return 1
  end
  redis.call('RPUSH', ns .. ':dups:' .. primary, dup)
  redis.call('EXPIRE', ns .. ':dups:' .. primary, ttl)
  return 0
end
"""

# ARGV[4] batch id, ARGV[5] job id, ARGV[6] the batch counter it joins, ARGV[7] '1' when it
# takes one of the queue places the batch reserved (shared/admission.py), ARGV[8]
# '1' when it waits for a worker (counted as pending), ARGV[9] the image's TTL, ARGV[10] '1' when
# ARGV[11] is its image, ARGV[12] when the batch's reservation lapses, ARGV[13] now (epoch s),
# ARGV[14] the SHA-256 of its bytes ('' for none), ARGV[15..] the job's field pairs. Stores one
# job of an upload, unless the sweeper rolled the upload back meanwhile (then nothing is stored:
# the request must not go on adding to a batch that ended `canceled`). An image whose bytes an
# earlier image of the batch had becomes that one's duplicate, in the same step (no image of its
# own: it waits for its twin, or copies its outcome when the twin is final). Returns {0} when
# refused, {1} when stored, {2, twin} when stored as a duplicate that waits, {3, twin} when
# stored as a duplicate that finished at once. An upload's images can go in one pipeline: each
# is atomic, they take their positions in the order sent, and a job sent again (the client
# retried the pipeline after a dropped connection) is answered as stored, not stored twice.
INSERT = (
    _PRELUDE
    + _ATTACH
    + """
local batch, id = ARGV[4], ARGV[5]
local bkey = ns .. ':batch:' .. batch
if redis.call('HGET', bkey, 'abandoned') == '1' then return {0} end
local jkey = ns .. ':job:' .. id
if redis.call('EXISTS', jkey) == 1 then  -- sent again (a pipeline retried): stored already
  local stored = redis.call('HMGET', jkey, 'duplicate_of', 'status')
  if not stored[1] then return {1} end
  return {is_final(stored[2]) and 3 or 2, stored[1]}
end
local twin = false
if ARGV[14] ~= '' then
  if redis.call('HSETNX', bkey .. ':digests', ARGV[14], id) == 1 then
    redis.call('EXPIRE', bkey .. ':digests', ttl)
  else
    twin = redis.call('HGET', bkey .. ':digests', ARGV[14])
  end
end
local fields = {}
for i = 15, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', jkey, unpack(fields))
redis.call('EXPIRE', jkey, ttl)
if twin then
  redis.call('HSET', jkey, 'duplicate_of', twin)
elseif ARGV[10] == '1' then
  redis.call('SET', ns .. ':image:' .. id, ARGV[11], 'EX', ARGV[9])
end
if ARGV[8] == '1' then redis.call('INCR', ns .. ':pending') end  -- decremented when it settles
if ARGV[7] == '1' then
  redis.call('HINCRBY', ns .. ':reservations', batch, -1)
  redis.call('ZADD', ns .. ':reservations:due', ARGV[12], batch)
end
-- its place in upload order, which the `?decision=` filter's index is sorted by
redis.call('HSET', jkey, 'position', redis.call('RPUSH', bkey .. ':jobs', id) - 1)
redis.call('EXPIRE', bkey .. ':jobs', ttl)
redis.call('HINCRBY', bkey, 'total', 1)
redis.call('HINCRBY', bkey, ARGV[6], 1)
redis.call('ZADD', ns .. ':batches:unsealed', ARGV[13], batch)  -- the upload lives
if twin then return {2 + attach(id, twin), twin} end
return {1}
"""
)

# ARGV[4] batch id; ARGV[5] the Idempotency-Key record its request reserved ('' for none) and
# ARGV[6] the binding it gets; ARGV[7] the TTL of events, ARGV[8] when their fan-out is due;
# ARGV[9], ARGV[10] id and JSON of the event of the jobs that finished at upload ('' for none);
# ARGV[11], ARGV[12] those of batch.completed ('' for none), recorded only when the batch
# completes right away.
# Marks the batch complete for uploads, and in the same step binds its Idempotency-Key and
# records its events: once sealed, a batch is accepted, and none of that may be lost to a
# failure in between (the events are written first, so a failure there seals nothing). Returns
# 2 if it completed right away, 1 if not, 0 if the sweeper rolled the upload back already (it
# stalled: see ABANDON).
SEAL = (
    _PRELUDE
    + """
local batch = ARGV[4]
local bkey = ns .. ':batch:' .. batch
local b = redis.call('HMGET', bkey, 'abandoned', 'queued', 'running')
if b[1] == '1' then return 0 end
local function record(id, body)
  redis.call('SET', ns .. ':event:' .. id, body, 'EX', ARGV[7])
  redis.call('ZADD', ns .. ':events:due', ARGV[8], id)
end
if ARGV[9] ~= '' then record(ARGV[9], ARGV[10]) end
if ARGV[11] ~= '' and tonumber(b[2] or '0') + tonumber(b[3] or '0') == 0 then
  record(ARGV[11], ARGV[12])  -- it completes below
end
redis.call('HSET', bkey, 'sealed', '1')
redis.call('ZREM', ns .. ':batches:unsealed', batch)
local ikey = ARGV[5]
if ikey ~= '' then
  local held = redis.call('GET', ikey)
  local mine = 'pending:' .. batch .. ' '
  -- a reservation that lapsed is bound too; one a later request made is left to it
  if not held or string.sub(held, 1, #mine) == mine then
    redis.call('SET', ikey, ARGV[6], 'EX', ttl)
  end
end
redis.call('DEL', bkey .. ':idempotency')
local done = maybe_complete(batch)
if done ~= 2 then redis.call('ZADD', ns .. ':batches:running', redis.call('TIME')[1], batch) end
return done
"""
)

# ARGV[4] batch id, ARGV[5] the canceled jobs' error (JSON). Cancels every job still queued;
# running ones finish. Returns the number canceled, negated minus one when the batch completed
# with this call (e.g. -1: none, done).
CANCEL = (
    _PRELUDE
    + """
local batch = ARGV[4]
local bkey = ns .. ':batch:' .. batch
local status = redis.call('HGET', bkey, 'status')
if status == 'completed' or status == 'canceled' then return 0 end
redis.call('HSET', bkey, 'cancel_requested', '1')
local canceled = 0
local reason = ARGV[5]
for _, id in ipairs(redis.call('LRANGE', bkey .. ':jobs', 0, -1)) do
  if redis.call('HGET', ns .. ':job:' .. id, 'status') == 'queued' then
    if settle(id, {'status', 'canceled', 'error', reason}) then canceled = canceled + 1 end
  end
end
if maybe_complete(batch) == 2 then return -canceled - 1 end
return canceled
"""
)

# ARGV[4] batch id, ARGV[5] the canceled jobs' error (JSON). Rolls back an upload that will never
# be sealed (refused, or its API process died): every job not started is canceled, running ones
# finish, the batch ends `canceled` once they have, the queue places it reserved are given back,
# and the Idempotency-Key its request reserved is freed unless a retry holds it already. ARGV[2]
# (the TTL) is short: nobody was told the batch id. Returns {the number of jobs canceled, their
# ids...} (their images are to be deleted), {-1} when the batch is gone or was rolled back
# already, or {-2} when it was sealed (it is accepted: its request must answer 202 and its
# Idempotency-Key stays bound).
ABANDON = (
    _PRELUDE
    + """
local batch = ARGV[4]
local bkey = ns .. ':batch:' .. batch
redis.call('ZREM', ns .. ':batches:unsealed', batch)
local b = redis.call('HMGET', bkey, 'status', 'sealed', 'abandoned')
if not b[1] then return {-1} end
if b[2] == '1' and b[3] ~= '1' then return {-2} end
if b[1] == 'completed' or b[1] == 'canceled' then return {-1} end
redis.call('HSET', bkey, 'abandoned', '1', 'cancel_requested', '1', 'sealed', '1')
redis.call('HDEL', ns .. ':reservations', batch)  -- queue places it held (shared/admission.py)
redis.call('ZREM', ns .. ':reservations:due', batch)
local canceled = {0}
for _, id in ipairs(redis.call('LRANGE', bkey .. ':jobs', 0, -1)) do
  local status = redis.call('HGET', ns .. ':job:' .. id, 'status')
  if status == 'queued' then
    if settle(id, {'status', 'canceled', 'error', ARGV[5]}) then
      canceled[1] = canceled[1] + 1
      canceled[#canceled + 1] = id
    end
  elseif is_final(status) then
    redis.call('EXPIRE', ns .. ':job:' .. id, ttl)
  end
end
local ikey = redis.call('GET', bkey .. ':idempotency')
if ikey then
  local held = redis.call('GET', ikey) or ''
  local mine = 'pending:' .. batch
  if string.sub(held, 1, #mine) == mine then redis.call('DEL', ikey) end
  redis.call('DEL', bkey .. ':idempotency')
end
redis.call('EXPIRE', bkey .. ':jobs', ttl)
redis.call('EXPIRE', bkey .. ':digests', ttl)
for _, decision in ipairs({"""
    + ", ".join(f"'{d}'" for d in DECISIONS)
    + """}) do
  redis.call('EXPIRE', bkey .. ':decided:' .. decision, ttl)
end
if maybe_complete(batch) ~= 2 then  -- jobs still running: they finish, then it completes
  redis.call('ZADD', ns .. ':batches:running', redis.call('TIME')[1], batch)
end
return canceled
"""
)

# ARGV[4] job id. Removes a single job that was never handed to a worker (its enqueue failed);
# one that still counted as pending gives its place back. Returns 1 when it was pending, else 0.
DELETE_JOB = (
    _PRELUDE
    + """
local jkey = ns .. ':job:' .. ARGV[4]
local status = redis.call('HGET', jkey, 'status')
redis.call('DEL', jkey, ns .. ':image:' .. ARGV[4])
if not status or is_final(status) then return 0 end
if redis.call('DECR', ns .. ':pending') < 0 then redis.call('SET', ns .. ':pending', 0) end
return 1
"""
)
