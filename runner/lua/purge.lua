-- Deletes an ended run now (runner/purge.py). ARGV: id, session name ('' none; its set
-- is the last KEY then). Returns {status it had ('' if no record), keys deleted}; a run
-- that has not ended is left alone ({status, -1}).
local status = redis.call('HGET', K.record, 'status') or ''
if status == 'queued' or status == 'running' or status == 'waiting' or status == 'suspended' then
  return {status, -1}
end
local n = 0
for _, key in ipairs(RUN) do n = n + redis.call('DEL', key) end
redis.call('ZREM', K.runs, ARGV[1])
redis.call('SREM', K.active, ARGV[1])
redis.call('SREM', K.queued, ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZREM', K.session, ARGV[1])
  if redis.call('ZCARD', K.session) == 0 then redis.call('ZREM', K.sessions, ARGV[2]) end
end
return {status, n}
