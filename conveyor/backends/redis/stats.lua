-- ARGV: none. Returns {the `stats` hash, flat; queue, ready_at of its oldest queued job, ...}.
-- A ready set is ordered by priority first: the oldest job is the oldest of the first entries
-- of each priority band, found with one ZRANGEBYSCORE per band present.
local oldest = {}
for _, field in ipairs(redis.call('HKEYS', P .. 'counts')) do
  local state, queue = string.match(field, '^([^|]*)|(.*)$')
  if state == 'queued' then
    local key = P .. 'ready:' .. queue
    local best
    local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    local bands = 0
    while head[1] and bands < 256 do
      local score = tonumber(head[2])
      local band = math.floor(score / BAND)
      local ready_at = (score - band * BAND) / 1000
      if not best or ready_at < best then best = ready_at end
      head = redis.call('ZRANGEBYSCORE', key, num((band + 1) * BAND), '+inf', 'WITHSCORES',
        'LIMIT', 0, 1)
      bands = bands + 1
    end
    if best then
      oldest[#oldest + 1] = queue
      oldest[#oldest + 1] = num(best)
    end
  end
end
return {redis.call('HGETALL', P .. 'stats'), oldest}
