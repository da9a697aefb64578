-- ARGV: id, message. Queues a message for a run that has not ended. Returns its status.
local status = redis.call('HGET', K.record, 'status')
if status == 'queued' or status == 'running' or status == 'waiting' or status == 'suspended' then
  redis.call('RPUSH', K.inbox, ARGV[2])
end
return status or ''
