-- Read-only (workers/sweeper.py, lost_candidates): the ids in KEYS[1] (the queued index)
-- that are neither in KEYS[2] (every key's deferred runs) nor in any of the RQ queue
-- lists KEYS[3..]. Server-side, so the sweeper reads only these runs' records, not every
-- queued run's; the rest of the lost-run rules (grace, slots, sessions) are in Python.
local queued = {}
for i = 3, #KEYS do
  for _, id in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do queued[id] = true end
end
local out = {}
for _, id in ipairs(redis.call('SDIFF', KEYS[1], KEYS[2])) do
  if not queued[id] then out[#out + 1] = id end
end
return out
