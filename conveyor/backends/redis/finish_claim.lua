-- A busy worker's outcomes and its next claim in one step. ARGV: now, worker, limit,
-- lease_seconds, clock ('' for TIME), the number n of queues, n queues, then the outcomes
-- packed as finish_jobs reads them. Returns {finish_jobs' reply, claim_jobs' reply, the
-- store's time that stamped the claims}.
local n = tonumber_(ARGV[6])
local queues = {}
for i = 7, 6 + n do queues[#queues + 1] = ARGV[i] end
local done = finish_jobs(ARGV[1], ARGV[7 + n])
local limit = tonumber_(ARGV[3])
local claimed = {}
local t = ''
if limit > 0 then
  local stamp = store_time(ARGV[5])
  t = num_noted(stamp)
  claimed = claim_jobs(ARGV[2], ARGV[3], ARGV[1], t, num_noted(stamp + tonumber_(ARGV[4])),
    queues)
end
notify()
return {done, claimed, t}
