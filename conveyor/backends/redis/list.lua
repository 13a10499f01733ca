-- ARGV: state, task, queue ('' for any), limit, cursor ('' for the newest).
-- Returns {jobs' fields newest first, the id to go on from when the scan stopped early}.
local state, task, queue = ARGV[1], ARGV[2], ARGV[3]
local limit = tonumber(ARGV[4])
local upper = ARGV[5] ~= '' and ('(' .. ARGV[5]) or '+'
local sources = {}
if state ~= '' then sources[1] = P .. 'state:' .. state
else for _, s in ipairs(STATES) do sources[#sources + 1] = P .. 'state:' .. s end end
local chunk = math.max(limit, 100)
local out, scanned = {}, 0
while #out < limit do
  -- the first `chunk` of the merged order all lie within each source's first `chunk`
  local ids = {}
  for _, src in ipairs(sources) do
    for _, id in ipairs(redis.call('ZREVRANGEBYLEX', src, upper, '-', 'LIMIT', 0, chunk)) do
      ids[#ids + 1] = id
    end
  end
  if #ids == 0 then return {out, ''} end
  table.sort(ids, function(a, b) return a > b end)
  for n = 1, math.min(chunk, #ids) do
    local id = ids[n]
    upper = '(' .. id
    local ok = true
    if task ~= '' or queue ~= '' then
      local f = redis.call('HMGET', jkey(id), 'task', 'queue')
      ok = (task == '' or f[1] == task) and (queue == '' or f[2] == queue)
    end
    if ok then
      out[#out + 1] = redis.call('HGETALL', jkey(id))
      if #out >= limit then return {out, ''} end
    end
  end
  scanned = scanned + math.min(chunk, #ids)
  -- keep one call short: the caller goes on from here
  if scanned >= 5000 then return {out, string.sub(upper, 2)} end
end
return {out, ''}
