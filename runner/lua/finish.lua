-- ARGV: id, epoch, status, worker, reason, error, retention_ms (0: keep the TTL off).
-- Ends an attempt: a terminal status, or queued (handoff) / waiting.
if not owns(ARGV[2]) then return redis.error_reply('STALE epoch ' .. ARGV[2] .. ' no longer owns the run') end
local last = append(ARGV[2], 'status', status_data(ARGV[3], ARGV[4], ARGV[5]))
set_status(ARGV[1], ARGV[3], ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', K.record, 'error', ARGV[6]) end
redis.call('DEL', K.lease)
if tonumber(ARGV[7]) > 0 then expire_run(ARGV[7]) end
return last
