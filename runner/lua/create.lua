-- ARGV: id, record fields (JSON object), events (JSON list of [type, data]), script text
-- KEYS[8]: script key
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('EXISTS run already exists') end
local fields = cjson.decode(ARGV[2])
for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
redis.call('HSET', KEYS[1], 'epoch', '0', 'steps', '0', 'dirty', '0', 'created_ms', now)
set_status(ARGV[1], 'queued', 'submitted')
local last = nil
for _, ev in ipairs(cjson.decode(ARGV[3])) do last = append('0', ev[1], ev[2]) end
if ARGV[4] ~= '' then redis.call('SET', KEYS[8], ARGV[4]) end
return last
