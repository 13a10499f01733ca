-- ARGV: waiter id, queue... Returns 'ready' when a queue holds a queued job. Otherwise the
-- waiter is registered with each queue, so that the next job that becomes queued or
-- scheduled there pushes onto its wake list (see notify()), and the earliest ready_at of the
-- queues' scheduled jobs is returned, or ''. Looking and registering are one step: a job
-- enqueued before it is seen, one enqueued after it wakes the waiter.
local waiter = ARGV[1]
local first = ''
for i = 2, #ARGV do
  local q = ARGV[i]
  if redis.call('ZCARD', P .. 'ready:' .. q) > 0 then return 'ready' end
  local s = redis.call('ZRANGE', P .. 'sched:' .. q, 0, 0, 'WITHSCORES')
  if s[2] and (first == '' or tonumber(s[2]) < tonumber(first)) then first = s[2] end
end
-- parked jobs come back at their refs' wake times (limiting.lua): look again then
local w = redis.call('ZRANGE', P .. 'limit_wake', 0, 0, 'WITHSCORES')
if w[2] and (first == '' or tonumber(w[2]) < tonumber(first)) then first = w[2] end
redis.call('DEL', P .. 'wake:' .. waiter) -- a wake-up left from an earlier wait
for i = 2, #ARGV do redis.call('SADD', P .. 'waiters:' .. ARGV[i], waiter) end
return first
