-- ARGV: id, action (resume | approve | deny), deny's reason, then what resume adds to
-- max_steps, max_tokens, max_cost, max_time, max_tool_calls (a limit of 0, none, stays
-- none). Returns {status it had, problem}: problem '' when applied, 'state' (not parked),
-- 'approval' (resume of a run that waits for an approval), 'budget' (approve or deny of
-- a run that waits for a budget). One script, so racing commands apply once.
local rec = redis.call('HMGET', K.record, 'status', 'epoch', 'waiting_for', 'gate_call', 'gate_tool')
local status, action = rec[1], ARGV[2]
if not status then return {'', 'missing'} end
local reason
if action == 'resume' then
  if status ~= 'waiting' and status ~= 'suspended' then return {status, 'state'} end
  if status == 'waiting' and rec[3] == 'approval' then return {status, 'approval'} end
  local limits = {'max_steps', 'max_tokens', 'max_cost', 'max_time', 'max_tool_calls'}
  for i, name in ipairs(limits) do
    local add = tonumber(ARGV[3 + i])
    if add > 0 and tonumber(redis.call('HGET', K.record, name) or '0') > 0 then
      if name == 'max_cost' or name == 'max_time' then
        redis.call('HINCRBYFLOAT', K.record, name, ARGV[3 + i])
      else
        redis.call('HINCRBY', K.record, name, ARGV[3 + i])
      end
    end
  end
  redis.call('HSET', K.record, 'dirty', '0')
  reason = 'resumed'
elseif status ~= 'waiting' then
  return {status, 'state'}
elseif rec[3] ~= 'approval' then
  return {status, 'budget'}
elseif action == 'approve' then
  redis.call('HSET', K.record, 'approved', rec[4])
  reason = 'approved: ' .. rec[5]
else
  local text = 'denied by user'
  if ARGV[3] ~= '' then text = text .. ': ' .. ARGV[3] end
  -- The model reads the denial as the call's result (same epoch: see parking.untouched).
  append(rec[2], 'message', cjson.encode({role = 'tool', content = text, tool_call_id = rec[4], name = rec[5]}))
  redis.call('HINCRBY', K.record, 'steps', 1)
  reason = 'denied: ' .. rec[5]
end
redis.call('HSET', K.record, 'waiting_for', '', 'gate_call', '', 'gate_tool', '')
append(rec[2], 'status', status_data('queued', '', reason))
set_status(ARGV[1], 'queued', reason)
return {status, ''}
