-- ARGV: id, record fields (JSON object), events (JSON list of [type, data]), script text,
-- session name ('' for none), retention_ms. A session's turn joins its session set and
-- the sessions index here, on the server's clock and atomically with the run; the
-- session set expires retention after its newest turn (older turns' ids drop out).
if redis.call('EXISTS', K.record) == 1 then return redis.error_reply('EXISTS run already exists') end
local fields = cjson.decode(ARGV[2])
for k, v in pairs(fields) do redis.call('HSET', K.record, k, v) end
redis.call('HSET', K.record, 'epoch', '0', 'steps', '0', 'dirty', '0', 'created_ms', now, 'session', ARGV[5])
set_status(ARGV[1], 'queued', 'submitted')
local last = nil
for _, ev in ipairs(cjson.decode(ARGV[3])) do last = append('0', ev[1], ev[2]) end
if ARGV[4] ~= '' then redis.call('SET', K.script, ARGV[4]) end
-- Blobs uploaded before the run existed carry a TTL (so a failed submit leaks nothing).
redis.call('PERSIST', K.blobs)
redis.call('PERSIST', K.history)  -- a fork's, written before the run (runner.forking)
if ARGV[5] ~= '' then
  local ttl = tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', K.session, 0, now - ttl)
  redis.call('ZADD', K.session, now, ARGV[1])
  redis.call('PEXPIRE', K.session, ttl)
  redis.call('ZADD', K.sessions, now, ARGV[5])
end
return last
