-- ARGV: queue... Returns 'ready' when a queue holds a queued job, else the earliest ready_at
-- of its scheduled jobs, else ''.
local first = ''
for _, q in ipairs(ARGV) do
  if redis.call('ZCARD', P .. 'ready:' .. q) > 0 then return 'ready' end
  local s = redis.call('ZRANGE', P .. 'sched:' .. q, 0, 0, 'WITHSCORES')
  if s[2] and (first == '' or tonumber(s[2]) < tonumber(first)) then first = s[2] end
end
return first
