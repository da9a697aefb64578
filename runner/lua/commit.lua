-- ARGV: id, epoch, lease_ms, steps (how many of the events are transcript steps),
-- stream length the caller saw before this commit, then type, data pairs.
-- Returns {last id, inbox length}. A retry of a commit that already landed (its reply
-- was lost) finds the stream longer by exactly its events and appends nothing.
if not owns(ARGV[2]) then return redis.error_reply('STALE epoch ' .. ARGV[2] .. ' no longer owns the run') end
local n = (#ARGV - 5) / 2
local len = redis.call('XLEN', KEYS[2])
local seen = tonumber(ARGV[5])
if len == seen + n then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  return {last[1][1], redis.call('LLEN', KEYS[7])}
elseif len ~= seen then
  return redis.error_reply('STALE stream has ' .. len .. ' events, epoch ' .. ARGV[2] .. ' saw ' .. seen)
end
local last = nil
for i = 6, #ARGV, 2 do last = append(ARGV[2], ARGV[i], ARGV[i + 1]) end
local steps = tonumber(ARGV[4])
if steps > 0 then
  redis.call('HINCRBY', KEYS[1], 'steps', steps)
  redis.call('HSET', KEYS[1], 'dirty', '0')
end
redis.call('HSET', KEYS[1], 'updated_ms', now)
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return {last, redis.call('LLEN', KEYS[7])}
