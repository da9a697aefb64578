-- Read-only (workers/sweeper.py, lost_candidates). After the generated line naming the
-- keys: L.queued (the queued index), L.deferred (every key's deferred runs), L.queues
-- (RQ's queue lists). Returns the ids in L.queued that are neither in L.deferred nor in
-- any of L.queues. Server-side, so the sweeper reads only these runs' records, not
-- every queued run's; the rest of the lost-run rules (grace, slots, sessions) are in
-- Python.
local queued = {}
for _, queue in ipairs(L.queues) do
  for _, id in ipairs(redis.call('LRANGE', queue, 0, -1)) do queued[id] = true end
end
for _, id in ipairs(redis.call('SMEMBERS', L.deferred)) do queued[id] = true end
local out = {}
-- SMEMBERS rather than SDIFF: the ACL user of ops/redis.conf has no SDIFF.
for _, id in ipairs(redis.call('SMEMBERS', L.queued)) do
  if not queued[id] then out[#out + 1] = id end
end
return out
