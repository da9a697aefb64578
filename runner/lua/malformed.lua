-- Read-only (workers/sweeper.py, drop_malformed). After the generated lines naming the
-- keys (M.active, M.queued: sets; M.runs: sorted set) and ID (keys.RUN_ID_PATTERN as a
-- Lua pattern): the members of each that are not run ids, as {active, queued, runs}.
-- Server-side, so a sweep does not carry every run id to Python to find none.
local function bad(members)
  local out = {}
  for _, id in ipairs(members) do
    if not string.find(id, ID) then out[#out + 1] = id end
  end
  return out
end
return {
  bad(redis.call('SMEMBERS', M.active)),
  bad(redis.call('SMEMBERS', M.queued)),
  bad(redis.call('ZRANGE', M.runs, 0, -1)),
}
