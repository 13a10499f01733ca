-- Workflows: the rule of backends/flow.py in Lua (keep the two in step), loaded after
-- common.lua into every script, so each finish, cancel, release, recovery and sweep decides
-- a workflow job's successors in the same script that made it final.
--
-- The graph is in each job's meta (canvas.flow_meta): flow.next = {{successor, slot,
-- enters}, ...}; flow['in'] = {n, one, shape, depth, af} on a held step, which waits
-- `scheduled` at HOLD. Keys: `flowin:<id>` a hash slot -> 'r'..result or 'f'..failure JSON,
-- the inputs of a held step so far (HLEN counts them: O(1) per member); `workflow:<id>` a hash
-- with `jobs` ([[id, task, output], ...] JSON) and `live` (jobs not yet purged).
local HOLD = 253402300799.0

local function flow_step(id)
  local f = redis.call('HMGET', jkey(id), 'state', 'ready_at', 'meta')
  if not f[1] then return nil end
  local fl = {}
  if f[3] then fl = cjson.decode(f[3]).flow or {} end
  return f[1], tonumber(f[2] or '0'), fl
end

local function held(state, ready_at) return state == 'scheduled' and ready_at >= HOLD end

-- canvas.pack_inputs, byte for byte
local function pack(payload, slots)
  local parts = {'\0wf1:', tostring(#payload), ':', payload}
  for _, v in ipairs(slots) do
    parts[#parts + 1] = tostring(#v)
    parts[#parts + 1] = ':'
    parts[#parts + 1] = v
  end
  return table.concat(parts)
end

-- Store one input of a held step (once per slot); the last one queues the step.
local function fill(id, slot, value, now)
  local state, ready_at, fl = flow_step(id)
  if not state or not held(state, ready_at) then return end
  local key = P .. 'flowin:' .. id
  redis.call('HSETNX', key, tostring(slot), value)
  local n = (fl['in'] and fl['in'].n) or 1
  if redis.call('HLEN', key) < n then return end
  local raw = redis.call('HGETALL', key)
  local slots = {}
  for i = 1, #raw, 2 do slots[tonumber(raw[i]) + 1] = raw[i + 1] end
  redis.call('DEL', key)
  local f = redis.call('HMGET', jkey(id), 'payload', 'queue')
  move(id, f[2], 'scheduled', 'queued', {'ready_at', num(now), 'payload', pack(f[1], slots)},
    nil)
end

local function end_held(id, to, err, now)
  redis.call('DEL', P .. 'flowin:' .. id)
  finalize(id, redis.call('HGET', jkey(id), 'queue'), 'scheduled', to, now, nil, err, true)
end

local function error_json(kind, message)
  return cjson.encode({type = kind, message = message, traceback = cjson.null})
end

local function stop_of(id, to, err)
  if err then
    local e = cjson.decode(err)
    return {origin = id, type = e.type, message = e.message, level = 0}
  end
  local kind = 'JobFailed'
  if to == 'cancelled' then kind = 'JobCancelled' elseif to == 'expired' then kind = 'JobExpired' end
  return {origin = id, type = kind, message = 'the job was ' .. to, level = 0}
end

local advance
advance = function(id, to, now, result, err, fl, stop)
  local links = fl.next
  if not links then return end
  if to == 'succeeded' then
    for _, l in ipairs(links) do fill(l[1], l[2], 'r' .. (result or ''), now) end
    return
  end
  stop = stop or stop_of(id, to, err)
  for _, l in ipairs(links) do
    local successor, slot, enters = l[1], l[2], l[3]
    local state, ready_at, sfl = flow_step(successor)
    if state and held(state, ready_at) then
      local inputs = sfl['in'] or {}
      local level = stop.level
      if enters > 0 and (level == 0 or enters < level) then level = enters end
      local depth = inputs.depth or 0
      if depth > 0 and not (level > 0 and depth >= level) then
        if inputs.af then
          local failure = cjson.encode({type = stop.type, message = stop.message,
            job_id = stop.origin})
          fill(successor, slot, 'f' .. failure, now)
        else
          local message = 'chord member ' .. stop.origin .. ' failed: ' .. stop.type .. ': '
            .. stop.message
          end_held(successor, 'failed', error_json(stop.type, message), now)
          advance(successor, 'failed', now, nil, nil, sfl,
            {origin = successor, type = stop.type, message = message, level = 0})
        end
      else
        local message = stop.origin .. ' did not succeed (' .. stop.type .. ': '
          .. stop.message .. ')'
        end_held(successor, 'cancelled', error_json('WorkflowStopped', message), now)
        advance(successor, 'cancelled', now, nil, nil, sfl,
          {origin = stop.origin, type = stop.type, message = stop.message, level = level})
      end
    end
  end
end

flow.final = function(id, to, now, result, err, meta)
  advance(id, to, now, result, err, cjson.decode(meta).flow or {}, nil)
end

flow.purged = function(id, meta)
  local workflow = cjson.decode(meta).workflow
  redis.call('DEL', P .. 'flowin:' .. id)
  if workflow then
    local key = P .. 'workflow:' .. workflow
    if redis.call('HINCRBY', key, 'live', -1) <= 0 then redis.call('DEL', key) end
  end
end

-- script body follows
