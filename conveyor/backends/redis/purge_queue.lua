-- ARGV: queue, batch size. Deletes up to a batch of its scheduled and queued jobs; returns
-- how many (the caller repeats while a full batch went).
local batch = tonumber(ARGV[2])
local n = 0
for _, kind in ipairs({'ready:', 'sched:'}) do
  if n < batch then
    for _, id in ipairs(redis.call('ZRANGE', P .. kind .. ARGV[1], 0, batch - n - 1)) do
      if delete_job(id) then n = n + 1 end
    end
  end
end
-- then the jobs of this queue that limits hold back (limiting.lua)
if n < batch then
  for _, ref in ipairs(redis.call('ZRANGE', P .. 'limit_wake', 0, -1)) do
    for _, id in ipairs(redis.call('ZRANGE', P .. 'held:' .. ref, 0, -1)) do
      if n >= batch then break end
      local f = redis.call('HMGET', jkey(id), 'state', 'queue')
      if f[2] == ARGV[1] and WAITING[f[1]] and delete_job(id) then n = n + 1 end
      if not WAITING[f[1]] or f[2] == ARGV[1] then redis.call('ZREM', P .. 'held:' .. ref, id) end
    end
  end
end
notify()
return n
