-- ARGV: now, then per job: id, token, state, has_result, result, error, ready_at,
-- counts_failure ('' stands for none). Returns 1 per job finished, 0 per job fenced.
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV, 8 do
  local id, token, to = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local err = ARGV[i + 5] ~= '' and ARGV[i + 5] or nil
  local f = redis.call('HMGET', jkey(id), 'state', 'token', 'queue')
  if f[1] ~= 'running' or f[2] ~= token then
    out[#out + 1] = 0
  else
    if FINAL[to] then
      local result = nil
      if ARGV[i + 3] == '1' then result = ARGV[i + 4] end
      finalize(id, f[3], 'running', to, now, result, err)
    else
      local ready_at = ARGV[i + 6] ~= '' and ARGV[i + 6] or ARGV[1]
      local sets, dels = {'ready_at', ready_at}, {'worker', 'lease_expires_at'}
      if err then sets[#sets + 1] = 'error'; sets[#sets + 1] = err
      else dels[#dels + 1] = 'error' end
      if ARGV[i + 7] == '1' then redis.call('HINCRBY', jkey(id), 'failures', 1) end
      move(id, f[3], 'running', to, sets, dels)
    end
    out[#out + 1] = 1
  end
end
notify()
return out
