-- Shared by every script. KEYS: 1 record, 2 events, 3 lease, 4 runs index,
-- 5 active set, 6 queued set, 7 inbox, 8 script. Times come from the server's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function append(epoch, etype, data)
  return redis.call('XADD', KEYS[2], '*', 'v', '1', 'type', etype, 'epoch', epoch, 'data', data)
end

local function status_data(status, worker, reason)
  local d = {status = status}
  if worker and worker ~= '' then d.worker = worker end
  if reason and reason ~= '' then d.reason = reason end
  return cjson.encode(d)
end

local function set_status(id, status, reason)
  redis.call('HSET', KEYS[1], 'status', status, 'updated_ms', now, 'reason', reason or '')
  redis.call('ZADD', KEYS[4], now, id)
  if status == 'running' then redis.call('SADD', KEYS[5], id) else redis.call('SREM', KEYS[5], id) end
  if status == 'queued' then redis.call('SADD', KEYS[6], id) else redis.call('SREM', KEYS[6], id) end
end

-- Fencing: the caller's epoch must be the run's, and the run must be running.
local function owns(epoch)
  local rec = redis.call('HMGET', KEYS[1], 'status', 'epoch')
  return rec[1] == 'running' and rec[2] == epoch
end
