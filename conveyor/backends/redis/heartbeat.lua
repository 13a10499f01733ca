-- ARGV: lease_expires_at, worker id, worker JSON, now, then job id, token pairs.
-- Returns {lost ids, ids whose cancellation was requested}.
local lease = ARGV[1]
local lost, cancel = {}, {}
for i = 5, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', jkey(id), 'state', 'token', 'cancel_requested')
  if f[1] ~= 'running' or f[2] ~= token then
    lost[#lost + 1] = id
  else
    redis.call('HSET', jkey(id), 'lease_expires_at', lease)
    redis.call('ZADD', P .. 'running', lease, id)
    if f[3] == '1' then cancel[#cancel + 1] = id end
  end
end
redis.call('HSET', P .. 'workers', ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'workers_seen', ARGV[4], ARGV[2])
return {lost, cancel}
