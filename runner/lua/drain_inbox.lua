-- ARGV: id, epoch. Moves every inbox message into the stream as a user message, fenced.
if not owns(ARGV[2]) then return redis.error_reply('STALE epoch ' .. ARGV[2] .. ' no longer owns the run') end
local ids = {}
while true do
  local text = redis.call('LPOP', K.inbox)
  if not text then break end
  table.insert(ids, append(ARGV[2], 'message', cjson.encode({role = 'user', content = text})))
end
return ids
