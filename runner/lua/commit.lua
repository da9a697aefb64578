-- ARGV: id, epoch, steps (how many of the events are transcript steps), stream length
-- the caller saw before this commit, the number B of workspace blobs carried, B digest,
-- content pairs (stored in the run's blob hash before the events that name them), then
-- type, data pairs. Returns {last id, inbox length}. The lease is left to the heartbeat: one call fewer on every step.
-- A retry of a commit that already landed (its reply was lost) finds the stream longer
-- by exactly its events and appends nothing. Kept to the fewest calls: this is the cost
-- of every step.
local rec = redis.call('HMGET', K.record, 'status', 'epoch')
if rec[1] ~= 'running' or rec[2] ~= ARGV[2] then
  return redis.error_reply('STALE epoch ' .. ARGV[2] .. ' no longer owns the run')
end
local len = redis.call('XLEN', K.events)
local seen = tonumber(ARGV[4])
local first = 6 + 2 * tonumber(ARGV[5])
if len ~= seen then
  if len == seen + (#ARGV - first + 1) / 2 then
    local last = redis.call('XREVRANGE', K.events, '+', '-', 'COUNT', 1)
    return {last[1][1], redis.call('LLEN', K.inbox)}
  end
  return redis.error_reply('STALE stream has ' .. len .. ' events, epoch ' .. ARGV[2] .. ' saw ' .. seen)
end
if first > 6 then redis.call('HSET', K.blobs, unpack(ARGV, 6, first - 1)) end
local last = nil
for i = first, #ARGV, 2 do last = append(ARGV[2], ARGV[i], ARGV[i + 1]) end
if ARGV[3] ~= '0' then
  redis.call('HINCRBY', K.record, 'steps', ARGV[3])
  redis.call('HSET', K.record, 'dirty', '0', 'updated_ms', now)
else
  redis.call('HSET', K.record, 'updated_ms', now)
end
redis.call('ZADD', K.runs, now, ARGV[1])
return {last, redis.call('LLEN', K.inbox)}
