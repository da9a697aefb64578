-- ARGV: id, retention_ms. Returns the status the run had. A running run only gets the
-- request; its worker ends it at the next safe point.
local rec = redis.call('HMGET', K.record, 'status', 'epoch')
local status = rec[1]
if status == 'running' then
  redis.call('HSET', K.record, 'cancel', '1')
elseif status == 'queued' or status == 'suspended' or status == 'waiting' then
  append(rec[2], 'status', status_data('cancelled', '', 'cancelled by user'))
  set_status(ARGV[1], 'cancelled', 'cancelled by user')
  expire_run(ARGV[2])
end
return status or ''
