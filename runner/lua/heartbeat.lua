-- ARGV: id, epoch, lease_ms. Returns 0 fenced, 1 ok, 2 ok but a cancel was requested.
if not owns(ARGV[2]) then return 0 end
-- PEXPIRE first: unlike SET it is allowed on a server out of memory, so a lease lives
-- through an outage of writes (guarantee 10).
if redis.call('PEXPIRE', K.lease, ARGV[3]) == 0 then redis.call('SET', K.lease, ARGV[2], 'PX', ARGV[3]) end
if redis.call('HGET', K.record, 'cancel') == '1' then return 2 end
return 1
