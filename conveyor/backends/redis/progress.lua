-- ARGV: job id, token, progress JSON. Returns 1 when recorded, 0 when fenced.
local f = redis.call('HMGET', jkey(ARGV[1]), 'state', 'token', 'task')
if f[1] ~= 'running' or f[2] ~= ARGV[2] then return 0 end
redis.call('HSET', jkey(ARGV[1]), 'progress', ARGV[3])
changed[1] = ARGV[1]
event(ARGV[1], f[3], 'running', ARGV[3])
notify()
return 1
