-- ARGV: id, worker, lease_ms, retention_ms, trace id (or empty). Returns {1, epoch}, or
-- {0, status} when there is nothing to run (not queued, or cancelled while it was being
-- handed over).
local rec = redis.call('HMGET', K.record, 'status', 'epoch', 'cancel')
if rec[1] ~= 'queued' then return {0, rec[1] or ''} end
if rec[3] == '1' then
  append(rec[2], 'status', status_data('cancelled', ARGV[2], 'cancelled by user'))
  set_status(ARGV[1], 'cancelled', 'cancelled by user')
  expire_run(ARGV[4])
  return {0, 'cancelled'}
end
local epoch = tostring(redis.call('HINCRBY', K.record, 'epoch', 1))
redis.call('HSET', K.record, 'worker', ARGV[2])
set_status(ARGV[1], 'running', '')
redis.call('SET', K.lease, epoch, 'PX', ARGV[3])
append(epoch, 'status', status_data('running', ARGV[2], '', ARGV[5]))
return {1, epoch}
