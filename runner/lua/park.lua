-- ARGV: id, epoch, worker, reason, waiting_for, gate_call, gate_tool. Ends attempt
-- epoch as waiting (runner/parking.py): what it waits for goes in the record with the
-- status, and the lease is released, so the worker is free and unpark finds it whole.
if not owns(ARGV[2]) then return redis.error_reply('STALE epoch ' .. ARGV[2] .. ' no longer owns the run') end
local last = append(ARGV[2], 'status', status_data('waiting', ARGV[3], ARGV[4]))
set_status(ARGV[1], 'waiting', ARGV[4])
redis.call('HSET', K.record, 'waiting_for', ARGV[5], 'gate_call', ARGV[6], 'gate_tool', ARGV[7])
redis.call('DEL', K.lease)
return last
