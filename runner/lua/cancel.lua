-- ARGV: id, retention_ms. Returns the status the run had. A running run only gets the
-- request; its worker ends it at the next safe point.
local rec = redis.call('HMGET', KEYS[1], 'status', 'epoch')
local status = rec[1]
if status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
elseif status == 'queued' or status == 'suspended' or status == 'waiting' then
  append(rec[2], 'status', status_data('cancelled', '', 'cancelled by user'))
  set_status(ARGV[1], 'cancelled', 'cancelled by user')
  local ttl = tonumber(ARGV[2])
  for i = 1, 2 do redis.call('PEXPIRE', KEYS[i], ttl) end
  for i = 7, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return status or ''
