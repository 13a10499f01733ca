-- ARGV: the workflow id, its jobs as JSON [[id, task, output], ...], then the records as
-- enqueue.lua takes them. Stores every job and the workflow at once; returns 1.
local key = P .. 'workflow:' .. ARGV[1]
if redis.call('EXISTS', key) == 1 then return 1 end -- a call retried after its reply was lost
local records = cmsgpack.unpack(ARGV[3])
for _, rec in ipairs(records) do store(rec) end
redis.call('HSET', key, 'jobs', ARGV[2], 'live', #records)
notify()
return 1
