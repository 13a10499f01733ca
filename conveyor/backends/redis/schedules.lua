-- Returns name, last_due, last_job_id, last_enqueued_at for every schedule (false for none).
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', P .. 'schedules')) do
  local f = redis.call('HMGET', P .. 'schedule:' .. name, 'last_due', 'last_job_id',
    'last_enqueued_at')
  out[#out + 1] = {name, f[1], f[2], f[3]}
end
return out
