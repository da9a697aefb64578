-- ARGV: id, epoch, lease_ms. Returns 0 fenced, 1 ok, 2 ok but a cancel was requested.
if not owns(ARGV[2]) then return 0 end
redis.call('SET', K.lease, ARGV[2], 'PX', ARGV[3])
if redis.call('HGET', K.record, 'cancel') == '1' then return 2 end
return 1
