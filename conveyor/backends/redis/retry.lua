-- ARGV: job id, now. Returns 1 when the job went back to queued, else 0.
local id = ARGV[1]
local f = redis.call('HMGET', jkey(id), 'state', 'queue', 'unique_key', 'ready_at')
if f[1] ~= 'failed' and f[1] ~= 'cancelled' and f[1] ~= 'expired' then return 0 end
-- a workflow step stopped before its inputs came has nothing to run with (workflow.lua)
if tonumber(f[4] or '0') >= HOLD then return 0 end
if f[3] then
  local holder = redis.call('HGET', P .. 'unique', f[3])
  if holder and holder ~= id and ACTIVE[redis.call('HGET', jkey(holder), 'state')] then
    return 0 -- another job of equal arguments is active: no twin
  end
  redis.call('HSET', P .. 'unique', f[3], id)
end
move(id, f[2], f[1], 'queued', {'ready_at', ARGV[2], 'failures', 0, 'crashes', 0},
  {'expires_at', 'result', 'error', 'finished_at', 'purge_at', 'cancel_requested'})
notify()
return 1
