-- Shared by every script: each .lua file is loaded with this one in front of it.
-- KEYS[1] is the namespace prefix, e.g. "{conveyor}:". Every key a script touches starts with
-- it, so all of them carry one hash tag and live in one Redis Cluster slot.
-- PUBLISH, set in front of this file by connection.py, is 'PUBLISH' on one server and
-- 'SPUBLISH' on a Cluster: the channels carry the hash tag too, so a sharded message stays in
-- the shard that owns the namespace.
local P = KEYS[1]
local WAITING = {scheduled = true, queued = true}
local ACTIVE = {scheduled = true, queued = true, running = true}
local FINAL = {succeeded = true, failed = true, cancelled = true, expired = true}
local STATES = {'scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired'}
-- 2^42 ms is the year 2109: priority bands never overlap and ready_at keeps 1/16 ms.
local BAND = 4398046511104

local changed = {} -- ids of jobs that changed, published once at the end
local woken = false -- a job became queued or scheduled: idle workers look again

-- Lua prints numbers with 14 digits; %.17g gives back the exact double.
local function num(x) return string.format('%.17g', x) end
local function jkey(id) return P .. 'job:' .. id end

-- Count changes add up here and are written once, by notify(): batches touch few fields.
local deltas = {}
local function count(queue, state, delta)
  local field = state .. '|' .. queue
  deltas[field] = (deltas[field] or 0) + delta
end

-- Take a job out of the indexes of its state.
local function unplace(id, state, queue)
  if state == 'queued' then redis.call('ZREM', P .. 'ready:' .. queue, id)
  elseif state == 'scheduled' then redis.call('ZREM', P .. 'sched:' .. queue, id)
  elseif state == 'running' then redis.call('ZREM', P .. 'running', id)
  else redis.call('ZREM', P .. 'purge', id) end
  redis.call('ZREM', P .. 'state:' .. state, id)
  redis.call('ZREM', P .. 'expiring', id)
  count(queue, state, -1)
end

-- Put a job into the indexes of its state. f: its priority, ready_at, lease_expires_at,
-- purge_at and expires_at when the caller has them, else they are read.
local function place(id, state, queue, f)
  if not f then
    f = redis.call('HMGET', jkey(id), 'priority', 'ready_at', 'lease_expires_at', 'purge_at',
      'expires_at')
    changed[#changed + 1] = id -- an existing job: someone may wait on it
  end
  if state == 'queued' then
    -- priority descending, then ready_at; equal scores fall back to the id, which sorts by time
    local score = -tonumber(f[1] or '0') * BAND + tonumber(f[2] or '0') * 1000
    redis.call('ZADD', P .. 'ready:' .. queue, num(score), id)
    woken = true
  elseif state == 'scheduled' then
    redis.call('ZADD', P .. 'sched:' .. queue, f[2] or '0', id)
    woken = true
  elseif state == 'running' then
    if f[3] then redis.call('ZADD', P .. 'running', f[3], id) end
  elseif f[4] then
    redis.call('ZADD', P .. 'purge', f[4], id)
  end
  if WAITING[state] and f[5] then redis.call('ZADD', P .. 'expiring', f[5], id) end
  redis.call('ZADD', P .. 'state:' .. state, 0, id)
  count(queue, state, 1)
end

local function move(id, queue, from, to, sets, dels)
  local k = jkey(id)
  unplace(id, from, queue)
  sets[#sets + 1] = 'state'
  sets[#sets + 1] = to
  redis.call('HSET', k, unpack(sets))
  if dels and #dels > 0 then redis.call('HDEL', k, unpack(dels)) end
  place(id, to, queue)
end

local function free_unique(id, unique_key)
  if unique_key and redis.call('HGET', P .. 'unique', unique_key) == id then
    redis.call('HDEL', P .. 'unique', unique_key)
  end
end

-- A final outcome: result and error as given (nil clears them), finished and purge times.
local function finalize(id, queue, from, to, now, result, err)
  local f = redis.call('HMGET', jkey(id), 'result_ttl', 'unique_key')
  local sets = {'finished_at', num(now), 'purge_at', num(now + tonumber(f[1] or '86400'))}
  local dels = {'worker', 'lease_expires_at', 'cancel_requested'}
  if result then sets[#sets + 1] = 'result'; sets[#sets + 1] = result
  else dels[#dels + 1] = 'result' end
  if err then sets[#sets + 1] = 'error'; sets[#sets + 1] = err
  else dels[#dels + 1] = 'error' end
  move(id, queue, from, to, sets, dels)
  free_unique(id, f[2])
end

local function delete_job(id)
  local k = jkey(id)
  local f = redis.call('HMGET', k, 'state', 'queue', 'key', 'unique_key')
  if not f[1] then return false end
  unplace(id, f[1], f[2])
  if f[3] and redis.call('HGET', P .. 'keys', f[3]) == id then
    redis.call('HDEL', P .. 'keys', f[3])
  end
  free_unique(id, f[4])
  redis.call('DEL', k)
  changed[#changed + 1] = id
  return true
end

-- A record as the field, value list HSET takes (records come packed with msgpack).
local function flatten(rec)
  local flat = {}
  for field, value in pairs(rec) do
    flat[#flat + 1] = field
    flat[#flat + 1] = value
  end
  return flat
end

local queues_seen = {}

-- Store a new job unless its key, or its unique key while active, is held. Returns the id of
-- the job that stands for it and whether that job is the new one.
local function store(rec)
  local id = rec.id
  if rec.key then
    local other = redis.call('HGET', P .. 'keys', rec.key)
    if other and redis.call('EXISTS', jkey(other)) == 1 then return other, false end
  end
  if rec.unique_key then
    local other = redis.call('HGET', P .. 'unique', rec.unique_key)
    if other and ACTIVE[redis.call('HGET', jkey(other), 'state')] then return other, false end
  end
  -- the same id again: a call retried after its reply was lost
  if redis.call('EXISTS', jkey(id)) == 1 then return id, false end
  redis.call('HSET', jkey(id), unpack(flatten(rec)))
  if rec.key then redis.call('HSET', P .. 'keys', rec.key, id) end
  if rec.unique_key and ACTIVE[rec.state] then
    redis.call('HSET', P .. 'unique', rec.unique_key, id)
  end
  if not queues_seen[rec.queue] then
    queues_seen[rec.queue] = true
    redis.call('SADD', P .. 'queues', rec.queue)
  end
  place(id, rec.state, rec.queue,
    {rec.priority, rec.ready_at, rec.lease_expires_at, rec.purge_at, rec.expires_at})
  return id, true
end

-- The end of every script that changes jobs: write the counts, then wake who listens.
local function notify()
  for field, delta in pairs(deltas) do
    if delta ~= 0 and redis.call('HINCRBY', P .. 'counts', field, delta) <= 0 then
      redis.call('HDEL', P .. 'counts', field)
    end
  end
  if #changed > 0 then redis.call(PUBLISH, P .. 'changed', table.concat(changed, ' ')) end
  if woken then redis.call(PUBLISH, P .. 'wake', '1') end
end

-- script body follows
