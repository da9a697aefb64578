-- An attempt died without handing off. ARGV: id, epoch ('' = whatever is current),
-- reason, lease must be gone (1/0), max dirty restarts.
-- Returns the new status, or '' when there was nothing to do. An id whose record is gone
-- (expired or evicted) leaves the active and queued sets.
local rec = redis.call('HMGET', K.record, 'status', 'epoch', 'dirty', 'worker')
if not rec[1] then
  redis.call('SREM', K.active, ARGV[1])
  redis.call('SREM', K.queued, ARGV[1])
  return ''
end
if rec[1] ~= 'running' then return '' end
if ARGV[2] ~= '' and rec[2] ~= ARGV[2] then return '' end
if ARGV[4] == '1' and redis.call('EXISTS', K.lease) == 1 then return '' end
local dirty = tonumber(rec[3] or '0')
local status, reason = 'queued', ARGV[3]
if dirty >= tonumber(ARGV[5]) then
  status = 'suspended'
  reason = 'crash loop: ' .. (dirty + 1) .. ' attempts in a row died without committing a step (last: ' .. ARGV[3] .. ')'
else
  redis.call('HSET', K.record, 'dirty', dirty + 1)
end
redis.call('DEL', K.lease)
append(rec[2], 'status', status_data(status, rec[4], reason))
set_status(ARGV[1], status, reason)
return status
