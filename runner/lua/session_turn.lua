-- Reserves a new turn's place in its session (runner/sessions.py plan_turn).
-- ARGV: id, the newest turn the caller saw ('' none), if-busy mode (queue|reject),
-- idle_ms, retention_ms, session name. K.prev: the record of that newest turn, when
-- there is one. Returns {kind, detail}: retry (the newest changed),
-- first, expired, gone (the newest turn's record is gone), busy (detail: its status),
-- held (queue behind it), next.
local newest = redis.call('ZREVRANGE', K.session, 0, 0, 'WITHSCORES')
local prev, score = newest[1] or '', tonumber(newest[2] or '0')
if prev ~= ARGV[2] then return {'retry', prev} end
local function reserve(kind, detail)
  redis.call('ZADD', K.session, now, ARGV[1])
  redis.call('PEXPIRE', K.session, ARGV[5])
  return {kind, detail}
end
if prev == '' then return reserve('first', '') end
local active = tonumber(redis.call('ZSCORE', K.sessions, ARGV[6]) or score)
if now - active > tonumber(ARGV[4]) then
  redis.call('DEL', K.session)
  return reserve('expired', prev)
end
local status = redis.call('HGET', K.prev, 'status')
if not status then
  -- A turn reserved a moment ago whose create has not landed yet counts as live.
  if now - score > 60000 then
    redis.call('DEL', K.session)
    return reserve('gone', prev)
  end
  status = 'starting'
end
if status == 'succeeded' or status == 'failed' or status == 'cancelled' then
  return reserve('next', prev)
end
if ARGV[3] == 'reject' then return {'busy', status} end
return reserve('held', prev)
