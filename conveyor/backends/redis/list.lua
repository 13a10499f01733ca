-- ARGV: state, task, queue ('' for any), limit, cursor ('' for the newest).
-- Returns {jobs' fields newest first, the id to go on from when the scan stopped early}.
-- Each filter has a lexical index to walk down from the cursor (newest first), so a page
-- reads about `limit` jobs: `state:<s>` for the rare states, `bytask:<task>`,
-- `byqueue:<queue>`, else the `byqueue` indexes of every queue, merged; running jobs and a
-- few queued ones come from their work indexes, sorted here.
local state, task, queue = ARGV[1], ARGV[2], ARGV[3]
local limit = tonumber(ARGV[4])
local cursor = ARGV[5]
local out = {}
local FEW_QUEUED = 10000

-- Does the job match the filters its source does not imply?
local check_task, check_queue, check_state = task ~= '', queue ~= '', state ~= ''
local function wanted(id)
  if not (check_task or check_queue or check_state) then return true end
  local f = redis.call('HMGET', jkey(id), 'task', 'queue', 'state')
  return (not check_task or f[1] == task) and (not check_queue or f[2] == queue)
    and (not check_state or f[3] == state)
end

-- A listing from a small set of ids: sorted here, newest first.
local function from_ids(ids)
  local kept = {}
  for _, id in ipairs(ids) do
    if cursor == '' or id < cursor then kept[#kept + 1] = id end
  end
  table.sort(kept, function(a, b) return a > b end)
  for _, id in ipairs(kept) do
    if wanted(id) then
      out[#out + 1] = redis.call('HGETALL', jkey(id))
      if #out >= limit then break end
    end
  end
  return {out, ''}
end

-- Running jobs are few (a lease each): their index is the listing.
if state == 'running' then
  check_state = false
  return from_ids(redis.call('ZRANGE', P .. 'running', 0, -1))
end

-- While few jobs are queued, their ready sets are the listing; many queued jobs are dense
-- among the newest, and walking down every queue's index (below) finds them at once.
if state == 'queued' then
  local queued, sets = 0, {}
  for _, field in ipairs(redis.call('HKEYS', P .. 'counts')) do
    local s, q = string.match(field, '^([^|]*)|(.*)$')
    if s == 'queued' and (queue == '' or q == queue) then
      sets[#sets + 1] = P .. 'ready:' .. q
      queued = queued + tonumber(redis.call('HGET', P .. 'counts', field))
    end
  end
  if queued <= FEW_QUEUED then
    check_state, check_queue = false, false
    local ids = {}
    for _, key in ipairs(sets) do
      for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do ids[#ids + 1] = id end
    end
    -- jobs a limit holds back are parked out of their ready set (limiting.lua); a parked
    -- entry may be stale (the job cancelled, expired or purged since): checked here
    local seen = {}
    for _, ref in ipairs(redis.call('ZRANGE', P .. 'limit_wake', 0, -1)) do
      for _, id in ipairs(redis.call('ZRANGE', P .. 'held:' .. ref, 0, -1)) do
        if not seen[id] then
          seen[id] = true
          local f = redis.call('HMGET', jkey(id), 'state', 'queue')
          if f[1] == 'queued' and (queue == '' or f[2] == queue) then ids[#ids + 1] = id end
        end
      end
    end
    return from_ids(ids)
  end
end

-- Every stored job is counted under its state and queue: the queues `counts` names are
-- those that hold jobs.
local function every_queue()
  local seen, keys = {}, {}
  for _, field in ipairs(redis.call('HKEYS', P .. 'counts')) do
    local q = string.match(field, '^[^|]*|(.*)$')
    if q and not seen[q] then
      seen[q] = true
      keys[#keys + 1] = P .. 'byqueue:' .. q
    end
  end
  return keys
end

local sources
if LISTED[state] then
  sources, check_state = {P .. 'state:' .. state}, false
elseif task ~= '' then
  sources, check_task = {P .. 'bytask:' .. task}, false
elseif queue ~= '' then
  sources, check_queue = {P .. 'byqueue:' .. queue}, false
else
  sources = every_queue()
end
local upper = cursor ~= '' and ('(' .. cursor) or '+'
local chunk = math.max(limit, 100)
local function newer()
  if #sources == 1 then
    return redis.call('ZREVRANGEBYLEX', sources[1], upper, '-', 'LIMIT', 0, chunk)
  end
  -- each index's newest `chunk` below the cursor: the newest `chunk` of them all are the
  -- newest of every job (a job is in one queue's index)
  local ids = {}
  for _, key in ipairs(sources) do
    for _, id in ipairs(redis.call('ZREVRANGEBYLEX', key, upper, '-', 'LIMIT', 0, chunk)) do
      ids[#ids + 1] = id
    end
  end
  table.sort(ids, function(a, b) return a > b end)
  for i = #ids, chunk + 1, -1 do ids[i] = nil end
  return ids
end
local scanned = 0
while true do
  local ids = newer()
  if #ids == 0 then return {out, ''} end
  for _, id in ipairs(ids) do
    if wanted(id) then
      out[#out + 1] = redis.call('HGETALL', jkey(id))
      if #out >= limit then return {out, ''} end
    end
  end
  upper = '(' .. ids[#ids]
  scanned = scanned + #ids
  -- keep one call short: the caller goes on from here
  if scanned >= 5000 then return {out, ids[#ids]} end
end
