-- ARGV: now, max_crashes, WorkerLost error JSON with 987654321 standing for the crash count,
-- batch size, clock ('' for TIME). Returns id, new state pairs. Leases are compared with the
-- store's time; during a stall (see in_stall) no crash is counted. `running` holds leases
-- rounded down to the second (see lease_score): the job's own expiry decides.
local now = tonumber(ARGV[1])
local max_crashes = tonumber(ARGV[2])
local t = store_time(ARGV[5])
local stalled = in_stall(t)
local out = {}
local lost = redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. num(t),
  'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(lost) do
  local f = redis.call('HMGET', jkey(id), 'queue', 'cancel_requested', 'crashes',
    'lease_expires_at')
  if not (has(f[4]) and tonumber(f[4]) >= t) then
    local crashes = tonumber(f[3] or '0')
    if not stalled then crashes = redis.call('HINCRBY', jkey(id), 'crashes', 1) end
    local token = redis.call('INCR', P .. 'token')
    redis.call('HSET', jkey(id), 'token', token)
    local to
    if f[2] == '1' then
      to = 'cancelled'
      finalize(id, f[1], 'running', to, now, nil, nil)
    elseif not stalled and crashes >= max_crashes then
      to = 'failed'
      local err = string.gsub(ARGV[3], '987654321', tostring(crashes))
      finalize(id, f[1], 'running', to, now, nil, err)
    else
      to = 'queued'
      move(id, f[1], 'running', to, {'ready_at', ARGV[1]}, {'worker', 'lease_expires_at'})
    end
    out[#out + 1] = id
    out[#out + 1] = to
  end
end
notify()
return out
