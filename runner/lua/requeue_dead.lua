-- An attempt died without handing off. ARGV: id, epoch ('' = whatever is current),
-- reason, lease must be gone (1/0), max dirty restarts.
-- Returns the new status, or '' when there was nothing to do.
local rec = redis.call('HMGET', KEYS[1], 'status', 'epoch', 'dirty', 'worker')
if rec[1] ~= 'running' then return '' end
if ARGV[2] ~= '' and rec[2] ~= ARGV[2] then return '' end
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then return '' end
local dirty = tonumber(rec[3] or '0')
local status, reason = 'queued', ARGV[3]
if dirty >= tonumber(ARGV[5]) then
  status = 'suspended'
  reason = 'crash loop: ' .. (dirty + 1) .. ' attempts in a row died without committing a step (last: ' .. ARGV[3] .. ')'
else
  redis.call('HSET', KEYS[1], 'dirty', dirty + 1)
end
redis.call('DEL', KEYS[3])
append(rec[2], 'status', status_data(status, rec[4], reason))
set_status(ARGV[1], status, reason)
return status
