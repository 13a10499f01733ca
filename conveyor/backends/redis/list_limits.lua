-- ARGV: now. Returns per stored limit: name, JSON, then a flat list of key, running, started
-- per ref in use. Refs with nothing running, started or held are forgotten here.
local now = tonumber(ARGV[1])
local uses = {}
for _, ref in ipairs(redis.call('ZRANGE', P .. 'limit_refs', 0, -1)) do
  local spec = limit_spec(ref)
  local running, started = 0, 0
  if spec then
    local use = limit_use(ref, spec, now)
    running, started = use.running, use.started
  end
  if running == 0 and started == 0 and redis.call('EXISTS', P .. 'held:' .. ref) == 0
    and redis.call('HLEN', P .. 'slots:' .. ref) == 0 then
    redis.call('ZREM', P .. 'limit_refs', ref)
  else
    local name, key = string.match(ref, '^(.-)\31(.*)$')
    local list = uses[name] or {}
    uses[name] = list
    list[#list + 1] = key
    list[#list + 1] = running
    list[#list + 1] = started
  end
end
local out = {}
local flat = redis.call('HGETALL', P .. 'limits')
for i = 1, #flat, 2 do
  out[#out + 1] = {flat[i], flat[i + 1], uses[flat[i]] or {}}
end
return out
