-- Renames a session (runner/session_admin.py). ARGV: old name, new name. KEYS: the old
-- session set, the new one, the sessions index, then the record of every turn the
-- caller found in the old set. Returns ok, exists (the new name is taken), missing, or
-- retry (a turn joined meanwhile).
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('ZSCORE', KEYS[3], ARGV[2]) then return 'exists' end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
if redis.call('ZCARD', KEYS[1]) ~= #KEYS - 3 then return 'retry' end
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HSET', KEYS[i], 'session', ARGV[2]) end
end
local score = redis.call('ZSCORE', KEYS[3], ARGV[1]) or now
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[3], score, ARGV[2])
return 'ok'
