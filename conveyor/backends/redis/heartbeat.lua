-- ARGV: lease_seconds, worker id, worker JSON, now, clock ('' for TIME), then job id, token
-- pairs. Returns {lost id, token pairs, pairs whose job's cancellation was requested}, flat.
local L = tonumber(ARGV[1])
local t = store_time(ARGV[5])
local lease = num_noted(t + L)
local score = lease_score(lease)
-- the store-wide heartbeat record: a gap since the last heartbeat from anyone is a stall
local quiet_after = redis.call('HGET', P .. 'beats', 'quiet_after')
if quiet_after and t > tonumber(quiet_after) then
  local stall_until = t + STALL_GRACE_LEASES * L
  local before = redis.call('HGET', P .. 'beats', 'stall_until')
  if before and tonumber(before) > stall_until then stall_until = tonumber(before) end
  redis.call('HSET', P .. 'beats', 'stall_until', num(stall_until))
end
redis.call('HSET', P .. 'beats', 'quiet_after', num(t + STALL_SHARE * L))
local lost, cancel = {}, {}
for i = 6, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', jkey(id), 'state', 'token', 'cancel_requested')
  if f[1] ~= 'running' or f[2] ~= token then
    lost[#lost + 1] = id
    lost[#lost + 1] = token
  else
    redis.call('HSET', jkey(id), 'lease_expires_at', lease)
    redis.call('ZADD', P .. 'running', score, id)
    if f[3] == '1' then
      cancel[#cancel + 1] = id
      cancel[#cancel + 1] = token
    end
  end
end
redis.call('HSET', P .. 'workers', ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'workers_seen', ARGV[4], ARGV[2])
return {lost, cancel}
