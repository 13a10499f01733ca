-- ARGV: the workflow id. Returns 0 when unknown, else flat: id, task, output ('1'/'0'),
-- state ('' once purged) per job, in order.
local jobs = redis.call('HGET', P .. 'workflow:' .. ARGV[1], 'jobs')
if not jobs then return 0 end
local out = {}
for _, j in ipairs(cjson.decode(jobs)) do
  out[#out + 1] = j[1]
  out[#out + 1] = j[2]
  out[#out + 1] = j[3] and '1' or '0'
  out[#out + 1] = redis.call('HGET', jkey(j[1]), 'state') or ''
end
return out
