-- ARGV: worker, limit, now, lease_seconds, clock ('' for TIME), queue... Returns {the
-- store's time that stamped the claims, what claim_jobs returns}.
local queues = {}
for i = 6, #ARGV do queues[#queues + 1] = ARGV[i] end
local t = store_time(ARGV[5])
local started = num_noted(t)
local out = claim_jobs(ARGV[1], ARGV[2], ARGV[3], started,
  num_noted(t + tonumber(ARGV[4])), queues)
notify()
return {started, out}
