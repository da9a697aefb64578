-- Fairness slots of one key (issue 17; runner/fairness.py). No prelude: these are not a
-- run's keys. After the generated line naming them (fairness.SLOT_KEYS): S.slots (hash
-- run -> "EPOCH EXPIRY_MS"), S.waiting (list of deferred run ids), S.tenants (set of
-- keys that hold slots or have deferred runs).
-- ARGV: op, tenant, limit, lease_ms, then per op: take run epoch front | beat run epoch |
-- release run epoch | wake. EPOCH '*' is a slot reserved for a woken run's next attempt.
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

-- Pops as many deferred runs as there are free slots, each with a reserved slot.
local function wake()
  local free = limit - purge()
  local woken = {}
  while free > 0 do
    local id = redis.call('LPOP', S.waiting)
    if not id then break end
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
  if not redis.call('LPOS', S.waiting, run) then
    -- A turn that ran before (handed off, requeued) goes first when a slot frees.
    if ARGV[7] == '1' then redis.call('LPUSH', S.waiting, run) else redis.call('RPUSH', S.waiting, run) end
  end
  return 0
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
