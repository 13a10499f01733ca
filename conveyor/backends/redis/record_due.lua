-- ARGV: schedule name, due, skip_if_active ('1'/'0'), now, the record (packed as for enqueue).
-- Returns 'duplicate', 'skipped' or 'enqueued'.
local skey = P .. 'schedule:' .. ARGV[1]
local f = redis.call('HMGET', skey, 'last_due', 'last_job_id')
if f[1] and tonumber(ARGV[2]) <= tonumber(f[1]) then return 'duplicate' end
redis.call('SADD', P .. 'schedules', ARGV[1])
redis.call('HSET', skey, 'last_due', ARGV[2])
if ARGV[3] == '1' and f[2] and ACTIVE[redis.call('HGET', jkey(f[2]), 'state')] then
  return 'skipped'
end
local id = store(cmsgpack.unpack(ARGV[5])[1])
redis.call('HSET', skey, 'last_job_id', id, 'last_enqueued_at', ARGV[4])
notify()
return 'enqueued'
