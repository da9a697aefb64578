-- The first attempt of a session turn takes in what it continues (runner/sessions.py).
-- ARGV: id, epoch, history JSON, workspace event data ('' none). Writes once: a retry
-- (or a later attempt) finds the history there and changes nothing. Returns 1 if written.
if not owns(ARGV[2]) then return redis.error_reply('STALE epoch ' .. ARGV[2] .. ' no longer owns the run') end
if redis.call('EXISTS', K.history) == 1 then return 0 end
redis.call('SET', K.history, ARGV[3])
-- Epoch 0: the turn's starting workspace, as a submit --workspace would be (diff's base).
if ARGV[4] ~= '' then append('0', 'workspace', ARGV[4]) end
return 1
