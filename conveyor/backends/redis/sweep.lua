-- ARGV: now, stale worker cutoff, batch size. Returns promoted, expired, purged, and 1 when a
-- batch was full (call again).
local now = tonumber(ARGV[1])
local batch = tonumber(ARGV[3])
local full = 0
local expired, promoted, purged = 0, 0, 0

-- Expiry first: a job past expires_at is never promoted. Jobs leave `expiring` lazily (a
-- claim does not take them out), so each entry is checked against its job here.
local due = redis.call('ZRANGEBYSCORE', P .. 'expiring', '-inf', ARGV[1], 'LIMIT', 0, batch)
if #due == batch then full = 1 end
for _, id in ipairs(due) do
  local f = redis.call('HMGET', jkey(id), 'state', 'queue', 'expires_at')
  if WAITING[f[1]] and has(f[3]) and tonumber(f[3]) > now then
    redis.call('ZADD', P .. 'expiring', f[3], id) -- a stale entry: keep the job's own time
  else
    if WAITING[f[1]] and has(f[3]) then
      finalize(id, f[2], f[1], 'expired', now, nil, nil)
      expired = expired + 1
    end
    redis.call('ZREM', P .. 'expiring', id)
  end
end

for _, q in ipairs(redis.call('SMEMBERS', P .. 'queues')) do
  local ids = redis.call('ZRANGEBYSCORE', P .. 'sched:' .. q, '-inf', ARGV[1], 'LIMIT', 0, batch)
  if #ids == batch then full = 1 end
  for _, id in ipairs(ids) do move(id, q, 'scheduled', 'queued', {}, nil) end
  promoted = promoted + #ids
end

local old = redis.call('ZRANGEBYSCORE', P .. 'purge', '-inf', ARGV[1], 'LIMIT', 0, batch)
if #old == batch then full = 1 end
for _, id in ipairs(old) do
  if delete_job(id) then purged = purged + 1 else redis.call('ZREM', P .. 'purge', id) end
end

local stale = redis.call('ZRANGEBYSCORE', P .. 'workers_seen', '-inf', '(' .. ARGV[2])
for _, wid in ipairs(stale) do
  redis.call('HDEL', P .. 'workers', wid)
  redis.call('ZREM', P .. 'workers_seen', wid)
end
notify()
return {promoted, expired, purged, full}
