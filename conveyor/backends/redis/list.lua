-- ARGV: state, task, queue ('' for any), limit, cursor ('' for the newest).
-- Returns {jobs' fields newest first, the id to go on from when the scan stopped early}.
local state, task, queue = ARGV[1], ARGV[2], ARGV[3]
local limit = tonumber(ARGV[4])
local cursor = ARGV[5]
local out = {}

local function wanted(id, check_state)
  if task == '' and queue == '' and not check_state then return true end
  local f = redis.call('HMGET', jkey(id), 'task', 'queue', 'state')
  return (task == '' or f[1] == task) and (queue == '' or f[2] == queue)
    and (not check_state or f[3] == state)
end

-- Running jobs are few (a lease each): their index, sorted here, is the listing.
if state == 'running' then
  local ids = {}
  for _, id in ipairs(redis.call('ZRANGE', P .. 'running', 0, -1)) do
    if cursor == '' or id < cursor then ids[#ids + 1] = id end
  end
  table.sort(ids, function(a, b) return a > b end)
  for _, id in ipairs(ids) do
    if wanted(id, false) then
      out[#out + 1] = redis.call('HGETALL', jkey(id))
      if #out >= limit then break end
    end
  end
  return {out, ''}
end

-- Rare states have a lexical index of their own; any other listing walks `all`.
local source, check_state = P .. 'all', state ~= ''
if LISTED[state] then source, check_state = P .. 'state:' .. state, false end
local upper = cursor ~= '' and ('(' .. cursor) or '+'
local chunk = math.max(limit, 100)
local scanned = 0
while true do
  local ids = redis.call('ZREVRANGEBYLEX', source, upper, '-', 'LIMIT', 0, chunk)
  if #ids == 0 then return {out, ''} end
  for _, id in ipairs(ids) do
    if wanted(id, check_state) then
      out[#out + 1] = redis.call('HGETALL', jkey(id))
      if #out >= limit then return {out, ''} end
    end
  end
  upper = '(' .. ids[#ids]
  scanned = scanned + #ids
  -- keep one call short: the caller goes on from here
  if scanned >= 5000 then return {out, ids[#ids]} end
end
