-- ARGV: job id, now. Returns 1 when cancelled or cancellation requested, 0 when final/unknown.
local id = ARGV[1]
local f = redis.call('HMGET', jkey(id), 'state', 'queue')
if not f[1] or FINAL[f[1]] then return 0 end
if f[1] == 'running' then
  redis.call('HSET', jkey(id), 'cancel_requested', '1')
  changed[1] = id
else
  finalize(id, f[2], f[1], 'cancelled', tonumber(ARGV[2]), nil, nil)
end
notify()
return 1
