-- Cluster-wide limits (conveyor/limits.py), loaded behind common.lua in every script.
-- A job's refs ([limit, key] pairs) are in its meta; a ref here is '<limit>\31<key>'.
--
-- Keys: `limits` a hash name -> JSON {rate_count, rate_seconds, concurrency};
-- `slots:<ref>` a hash job id -> the token of the claim holding the slot (a slot counts only
-- while its job runs under that token with a live lease: nothing a crash could leak);
-- `starts:<ref>` the claims of the rate's sliding window, scored by time; `held:<ref>` the
-- jobs the ref holds back, parked out of their ready set and scored as there, so claims
-- never walk them again; `limit_wake` refs with parked jobs, scored by when to look again;
-- `limit_refs` refs in use, for listing.

-- parked jobs brought back per ref and claim; wake times looked at per claim; jobs one claim
-- parks at most (it then returns what it found; the next claim goes on)
local LIMIT_UNPARK, LIMIT_WAKES, LIMIT_PARK = 100, 20, 1000

local function limit_refs_of(meta)
  if not (meta and string.find(meta, '"limits"', 1, true)) then return nil end
  local raw = cjson.decode(meta).limits
  if not raw or #raw == 0 then return nil end
  local refs = {}
  for i, pair in ipairs(raw) do refs[i] = pair[1] .. '\31' .. pair[2] end
  return refs
end

-- One claim's view of the limits: specs and uses read once, then counted on.
-- (limit_specs, limit_uses: declared in common.lua, fresh for each call)

local function limit_spec(ref)
  local name = string.match(ref, '^(.-)\31')
  local spec = limit_specs[name]
  if spec == nil then
    local raw = redis.call('HGET', P .. 'limits', name)
    spec = raw and cjson.decode(raw) or false
    limit_specs[name] = spec
  end
  return spec or nil
end

local function limit_use(ref, spec, now)
  local use = limit_uses[ref]
  if use then return use end
  use = {running = 0, started = 0, first_end = math.huge, oldest = math.huge}
  local skey = P .. 'slots:' .. ref
  local flat = redis.call('HGETALL', skey)
  for i = 1, #flat, 2 do
    local f = redis.call('HMGET', jkey(flat[i]), 'state', 'token', 'lease_expires_at')
    if f[1] == 'running' and f[2] == flat[i + 1] and has(f[3]) and tonumber(f[3]) >= now then
      use.running = use.running + 1
      use.first_end = math.min(use.first_end, tonumber(f[3]))
    else
      redis.call('HDEL', skey, flat[i])
    end
  end
  if spec.rate_count then
    local wkey = P .. 'starts:' .. ref
    redis.call('ZREMRANGEBYSCORE', wkey, '-inf', num(now - spec.rate_seconds))
    use.started = redis.call('ZCARD', wkey)
    local first = redis.call('ZRANGE', wkey, 0, 0, 'WITHSCORES')
    if first[2] then use.oldest = tonumber(first[2]) end
  end
  limit_uses[ref] = use
  return use
end

-- How many more jobs the ref admits now; nil when its limit is not stored (no limit).
local function limit_free(ref, now)
  local spec = limit_spec(ref)
  if not spec then return nil end
  local use = limit_use(ref, spec, now)
  local free = math.huge
  if spec.concurrency then free = math.min(free, spec.concurrency - use.running) end
  if spec.rate_count then free = math.min(free, spec.rate_count - use.started) end
  return math.max(free, 0)
end

local function limit_blocking(refs, now)
  for _, ref in ipairs(refs) do
    if limit_free(ref, now) == 0 then return ref end
  end
  return nil
end

local function limit_take(refs, now, lease)
  for _, ref in ipairs(refs) do
    local use = limit_uses[ref]
    if use then
      use.running = use.running + 1
      use.started = use.started + 1
      use.first_end = math.min(use.first_end, tonumber(lease))
      use.oldest = math.min(use.oldest, now)
    end
  end
end

-- When a saturated ref may admit again without a finish: its first lease to run out, the
-- oldest claim to leave the window, whichever of them blocks last.
local function limit_next_chance(ref, now)
  local spec = limit_spec(ref)
  if not spec then return now end
  local use = limit_use(ref, spec, now)
  local at = now
  if spec.concurrency and use.running >= spec.concurrency then
    at = math.max(at, use.first_end)
  end
  if spec.rate_count and use.started >= spec.rate_count then
    at = math.max(at, use.oldest + spec.rate_seconds)
  end
  return at
end

-- The caller takes the job out of its ready set (a claim does so at its end).
local function limit_park(id, score, ref, now)
  redis.call('ZADD', P .. 'held:' .. ref, score, id)
  redis.call('ZADD', P .. 'limit_wake', 'LT', num(limit_next_chance(ref, now)), ref)
end

-- Parked jobs of refs whose wake time came go back to their ready sets, as many as each ref
-- admits now; the ref's wake time then says when to look again.
local LIMIT_WAKES_S = LIMIT_WAKES .. ''
local function limit_unpark_due(now, now_s)
  local due = redis.call('ZRANGEBYSCORE', P .. 'limit_wake', '-inf', now_s,
    'LIMIT', '0', LIMIT_WAKES_S)
  for _, ref in ipairs(due) do
    local free = limit_free(ref, now)
    local n = free == nil and LIMIT_UNPARK or math.min(free, LIMIT_UNPARK)
    local hkey = P .. 'held:' .. ref
    local moved, rounds = 0, 0
    -- a parked job cancelled, expired or purged since is only dropped from here, and the
    -- next one read in its place
    while moved < n and rounds < 10 do
      rounds = rounds + 1
      local r = redis.call('ZRANGE', hkey, 0, n - moved - 1, 'WITHSCORES')
      if #r == 0 then break end
      for i = 1, #r, 2 do
        local id = r[i]
        local f = redis.call('HMGET', jkey(id), 'state', 'queue')
        if f[1] == 'queued' then
          redis.call('ZADD', P .. 'ready:' .. f[2], r[i + 1], id)
          woken[f[2]] = true
          moved = moved + 1
        end
        redis.call('ZREM', hkey, id)
      end
    end
    if redis.call('EXISTS', hkey) == 0 then
      redis.call('ZREM', P .. 'limit_wake', ref)
    else
      -- brought some back: look again next claim (they may be held by another ref)
      local at = moved > 0 and now or limit_next_chance(ref, now)
      redis.call('ZADD', P .. 'limit_wake', num(at), ref)
    end
  end
end

-- After the claim's tokens are known: the slots and the window's claims.
local function limit_record(id, token, refs, now_s, now)
  for _, ref in ipairs(refs) do
    redis.call('HSET', P .. 'slots:' .. ref, id, token)
    local spec = limit_spec(ref)
    if spec and spec.rate_count then
      local wkey = P .. 'starts:' .. ref
      redis.call('ZADD', wkey, now_s, id .. ':' .. token)
      redis.call('PEXPIRE', wkey, math.ceil(spec.rate_seconds * 1000) + 1000)
    end
    redis.call('ZADD', P .. 'limit_refs', now_s, ref)
  end
end

-- A claim that ended (finished, handed back) frees its slots at once, and the refs' parked
-- jobs are looked at by the next claim.
-- (Due at 0, not at a time: the caller's clock is not the store's.)
local function limit_release(id, meta, queue)
  local refs = limit_refs_of(meta)
  if not refs then return end
  for _, ref in ipairs(refs) do
    redis.call('HDEL', P .. 'slots:' .. ref, id)
    if redis.call('ZADD', P .. 'limit_wake', 'XX', 'LT', 'CH', 0, ref) == 1 then
      woken[queue] = true
    end
  end
end
