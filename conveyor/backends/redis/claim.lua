-- ARGV: worker, limit, now, lease_expires_at, queue... Returns what claim_jobs returns.
local queues = {}
for i = 5, #ARGV do queues[#queues + 1] = ARGV[i] end
local out = claim_jobs(ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], queues)
notify()
return out
