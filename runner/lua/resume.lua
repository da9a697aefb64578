-- ARGV: id. A suspended or waiting run goes back to queued. Returns the status it had.
local status = redis.call('HGET', K.record, 'status')
if status == 'suspended' or status == 'waiting' then
  local epoch = redis.call('HGET', K.record, 'epoch')
  redis.call('HSET', K.record, 'dirty', '0')
  append(epoch, 'status', status_data('queued', '', 'resumed'))
  set_status(ARGV[1], 'queued', 'resumed')
end
return status or ''
