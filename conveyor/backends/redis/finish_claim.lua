-- A busy worker's outcomes and its next claim in one step. ARGV: now, worker, limit,
-- lease_expires_at, the number n of queues, n queues, then per job what finish_jobs reads.
-- Returns {finish_jobs' reply, claim_jobs' reply}.
local n = tonumber(ARGV[5])
local queues = {}
for i = 6, 5 + n do queues[#queues + 1] = ARGV[i] end
local done = finish_jobs(ARGV[1], 6 + n)
local limit = tonumber(ARGV[3])
local claimed = {}
if limit > 0 then claimed = claim_jobs(ARGV[2], limit, ARGV[1], ARGV[4], queues) end
notify()
return {done, claimed}
