-- Shared by every script, after the generated line that names the KEYS (see
-- runner/keys.py SCRIPT_KEYS): K.record, K.events, K.lease, K.inbox, K.script (the
-- run's own keys, also listed in RUN), K.runs, K.active, K.queued, K.sessions (global
-- indexes) and K.session (the run's session set, given to create only).
-- Times come from the server's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- A workspace event's changes are applied to the manifest hash in the same script, so
-- the manifest is always the fold of the committed stream (issue 11).
local function apply_workspace(data)
  local d = cjson.decode(data)
  for _, c in ipairs(d.changes) do
    if c.kind == 'deleted' then
      redis.call('HDEL', K.manifest, c.path)
    else
      redis.call('HSET', K.manifest, c.path, cjson.encode(c))
    end
  end
  if type(d.note) == 'string' then redis.call('HSET', K.record, 'workspace', d.note) end
end

-- Usage totals are kept in the record as usage events land (issue 13: runner status).
local function add_usage(data)
  local d = cjson.decode(data)
  redis.call('HINCRBY', K.record, 'tokens_in', d.input_tokens or 0)
  redis.call('HINCRBY', K.record, 'tokens_out', d.output_tokens or 0)
  if type(d.cost) == 'number' and d.cost > 0 then
    redis.call('HINCRBYFLOAT', K.record, 'cost', string.format('%.10f', d.cost))
  end
end

local function append(epoch, etype, data)
  if etype == 'workspace' then apply_workspace(data) elseif etype == 'usage' then add_usage(data) end
  return redis.call('XADD', K.events, '*', 'v', '1', 'type', etype, 'epoch', epoch, 'data', data)
end

local function status_data(status, worker, reason, trace)
  local d = {status = status}
  if worker and worker ~= '' then d.worker = worker end
  if reason and reason ~= '' then d.reason = reason end
  if trace and trace ~= '' then d.trace = trace end
  return cjson.encode(d)
end

local function set_status(id, status, reason)
  redis.call('HSET', K.record, 'status', status, 'updated_ms', now, 'reason', reason or '')
  redis.call('ZADD', K.runs, now, id)
  if status == 'running' then redis.call('SADD', K.active, id) else redis.call('SREM', K.active, id) end
  if status == 'queued' then redis.call('SADD', K.queued, id) else redis.call('SREM', K.queued, id) end
end

-- Every key of the run expires ``ttl`` ms from now (an ended run is kept for retention).
local function expire_run(ttl)
  for _, key in ipairs(RUN) do redis.call('PEXPIRE', key, ttl) end
end

-- Fencing: the caller's epoch must be the run's, and the run must be running.
local function owns(epoch)
  local rec = redis.call('HMGET', K.record, 'status', 'epoch')
  return rec[1] == 'running' and rec[2] == epoch
end
