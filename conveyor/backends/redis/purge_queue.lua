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
notify()
return n
