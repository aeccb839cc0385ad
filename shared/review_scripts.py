"""The review store's Lua scripts (shared/review_store.py): each step that changes an item and
the bytes counted for it runs as one, so concurrent keeps and deletes never count twice."""

from __future__ import annotations

# KEYS: items hash, order zset, pending zset, bytes counter, KEEPING set.
# ARGV: job id, item JSON, score, size, tenant, "1" when the item is pending.
# Adds the item unless one is kept for the job already; returns 1 when added.
ADD = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[3], tonumber(ARGV[3]), ARGV[1])
else
  redis.call('ZADD', KEYS[2], tonumber(ARGV[3]), ARGV[1])
end
redis.call('INCRBY', KEYS[4], tonumber(ARGV[4]))
redis.call('SADD', KEYS[5], ARGV[5])
return 1
"""

# KEYS: items hash, order zset, pending zset. ARGV: job id, the JSON read, the merged JSON,
# "1" to promote a pending item into the listed ones, its score there.
# Replaces the item only if it is still the one read: 1 done, 0 it changed, -1 it is gone.
MERGE = """
local now = redis.call('HGET', KEYS[1], ARGV[1])
if not now then return -1 end
if now ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('ZADD', KEYS[2], tonumber(ARGV[5]), ARGV[1])
end
return 1
"""

# KEYS: items hash, order zset, pending zset, bytes counter. ARGV: job ids.
# Removes the items still there and counts their bytes off once: two deleters of one item (the
# sweeper and a request) subtract its size once. Returns the ids it removed.
DELETE = """
local removed, total = {}, 0
for _, id in ipairs(ARGV) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw and redis.call('HDEL', KEYS[1], id) == 1 then
    total = total + tonumber(cjson.decode(raw)['size'])
    removed[#removed + 1] = id
  end
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
end
if total > 0 then redis.call('DECRBY', KEYS[4], total) end
return removed
"""
