-- ARGV: job id, token, started ('1'/'0'), now. Returns 1 when handed back, 0 when fenced.
local id = ARGV[1]
local f = redis.call('HMGET', jkey(id), 'state', 'token', 'queue', 'cancel_requested', 'meta')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return 0 end
limit_release(id, f[5], f[3])
-- the released claim's token is spent
local token = redis.call('INCR', P .. 'token')
redis.call('HSET', jkey(id), 'token', token)
if ARGV[3] ~= '1' then redis.call('HINCRBY', jkey(id), 'attempts', -1) end
if f[4] == '1' then
  finalize(id, f[3], 'running', 'cancelled', tonumber(ARGV[4]), nil, nil)
else
  move(id, f[3], 'running', 'queued', {}, {'worker', 'lease_expires_at'})
end
notify()
return 1
