-- ARGV: worker, limit, now, lease_seconds, clock ('' for TIME), queue... Returns {the
-- store's time that stamped the claims, what claim_jobs returns}.
local queues = {}
for i = 6, #ARGV do queues[#queues + 1] = ARGV[i] end
local t = store_time(ARGV[5])
local lease = num(t + tonumber(ARGV[4]))
local out = claim_jobs(ARGV[1], tonumber(ARGV[2]), ARGV[3], num(t), lease, queues)
notify()
return {num(t), out}
