-- ARGV: worker, limit, now, lease_expires_at, queue... Returns the claimed jobs' fields.
local worker, limit, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local queues = {}
for i = 5, #ARGV do queues[#queues + 1] = ARGV[i] end

-- Scheduled jobs whose time came join their queue first, so one order covers both.
for _, q in ipairs(queues) do
  local due = redis.call('ZRANGEBYSCORE', P .. 'sched:' .. q, '-inf', ARGV[3], 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do move(id, q, 'scheduled', 'queued', {}, nil) end
end

-- Merge the queues' heads: the lowest score wins, then the lowest id.
local skip, head = {}, {}
local function peek(qi)
  local r = redis.call('ZRANGE', P .. 'ready:' .. queues[qi], skip[qi], skip[qi], 'WITHSCORES')
  if r[1] then head[qi] = {r[1], tonumber(r[2])} else head[qi] = false end
end
for qi = 1, #queues do skip[qi] = 0; peek(qi) end

local out, scanned = {}, 0
while #out < limit and scanned < 10000 do
  local best = nil
  for qi = 1, #queues do
    local h = head[qi]
    if h then
      local b = best and head[best]
      if not b or h[2] < b[2] or (h[2] == b[2] and h[1] < b[1]) then best = qi end
    end
  end
  if not best then break end
  scanned = scanned + 1
  local id = head[best][1]
  local expires = redis.call('HGET', jkey(id), 'expires_at')
  if expires and tonumber(expires) <= now then
    skip[best] = skip[best] + 1 -- sweep marks it expired; claims pass it by
  else
    local token = redis.call('INCR', P .. 'token')
    redis.call('HINCRBY', jkey(id), 'attempts', 1)
    move(id, queues[best], 'queued', 'running',
      {'token', token, 'worker', worker, 'started_at', ARGV[3], 'lease_expires_at', ARGV[4]})
    out[#out + 1] = redis.call('HGETALL', jkey(id))
  end
  peek(best)
end
notify()
return out
