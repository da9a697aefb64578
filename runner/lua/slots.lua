-- Fairness slots of one key (issue 17; runner/fairness.py). No prelude: these are not a
-- run's keys. After the generated line naming them (fairness.SLOT_KEYS): S.slots (hash
-- run -> "EPOCH EXPIRY_MS"), S.waiting (list of deferred run ids), S.tenants (set of
-- keys that hold slots or have deferred runs), S.deferred (set of every key's deferred
-- run ids, kept equal to the union of the waiting lists, so the sweeper need not read
-- them), and for 'backlog' only S.queue (the RQ queue list the backlog is taken from).
-- ARGV: op, tenant, limit, lease_ms, then per op: take run epoch front | beat run epoch |
-- release run epoch | wake | backlog (run front)... . EPOCH '*' is a slot reserved for a
-- woken run's next attempt.
-- Expiry is on the server's clock; an expired holder is dropped by whoever looks next,
-- so a crashed worker's slot comes back when its lease would have expired.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local op, tenant, limit, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local run, epoch = ARGV[5], ARGV[6]

-- Drops expired holders; returns how many are left.
local function purge()
  local all = redis.call('HGETALL', S.slots)
  local held = 0
  for i = 1, #all, 2 do
    local expiry = tonumber(string.match(all[i + 1], ' (%d+)$') or '0')
    if expiry <= now then redis.call('HDEL', S.slots, all[i]) else held = held + 1 end
  end
  return held
end

local function hold(id, tag)
  redis.call('HSET', S.slots, id, tag .. ' ' .. (now + lease))
  redis.call('PEXPIRE', S.slots, lease * 4)
end

local function tag_of(id)
  local value = redis.call('HGET', S.slots, id)
  if not value then return nil end
  return string.match(value, '^(%S+) ')
end

-- Puts a run on the waiting list (once; at the front if it ran before).
local function wait(id, front)
  redis.call('SADD', S.deferred, id)
  if redis.call('LPOS', S.waiting, id) then return end
  if front then redis.call('LPUSH', S.waiting, id) else redis.call('RPUSH', S.waiting, id) end
end

-- Pops as many deferred runs as there are free slots, each with a reserved slot.
local function wake()
  local free = limit - purge()
  local woken = {}
  while free > 0 do
    local id = redis.call('LPOP', S.waiting)
    if not id then break end
    redis.call('SREM', S.deferred, id)
    hold(id, '*')
    woken[#woken + 1] = id
    free = free - 1
  end
  if redis.call('LLEN', S.waiting) == 0 and redis.call('HLEN', S.slots) == 0 then
    redis.call('SREM', S.tenants, tenant)
  end
  return woken
end

if op == 'take' then
  redis.call('SADD', S.tenants, tenant)
  local held = purge()
  if redis.call('HEXISTS', S.slots, run) == 1 or held < limit then
    hold(run, epoch)
    return 1
  end
  -- A turn that ran before (handed off, requeued) goes first when a slot frees.
  wait(run, ARGV[7] == '1')
  return 0
elseif op == 'backlog' then
  -- The key was found full: move its runs still queued in S.queue (ids the caller read
  -- from the queue's head) to its waiting list in one go, so that the runs of other keys
  -- behind them are not dequeued one deferral at a time. A run that holds a slot (handed
  -- off, woken with a reservation) stays; one another worker popped meanwhile is its
  -- worker's to admit (LREM finds nothing); if a slot freed meanwhile, nothing moves.
  if purge() < limit then return 0 end
  local moved, fronts = 0, {}
  for i = 5, #ARGV, 2 do
    local id = ARGV[i]
    if redis.call('HEXISTS', S.slots, id) == 0 and redis.call('LREM', S.queue, 1, id) == 1 then
      if ARGV[i + 1] == '1' then fronts[#fronts + 1] = id else wait(id, false) end
      moved = moved + 1
    end
  end
  for i = #fronts, 1, -1 do wait(fronts[i], true) end  -- in queue order at the front
  if moved > 0 then redis.call('SADD', S.tenants, tenant) end
  return moved
elseif op == 'beat' then
  local tag = tag_of(run)
  if tag == epoch then hold(run, epoch) return 1 end
  if tag ~= nil then return 0 end  -- another attempt holds it: fenced
  -- Lost while the server was away (expired): take it again if there is room.
  if purge() < limit then hold(run, epoch) return 1 end
  return 0
elseif op == 'release' then
  local tag = tag_of(run)
  if tag == epoch then redis.call('HDEL', S.slots, run) end
  return wake()
elseif op == 'wake' then
  return wake()
end
return redis.error_reply('unknown op ' .. op)
