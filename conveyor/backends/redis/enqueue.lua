-- Two forms. One argument: ARGV[1], the records, a msgpack array of records, each an array in
-- the order of FIELDS. More: one new queued job with no key, unique key or expiry (the common
-- delay(), see codec.py one_args), flat: id, task, queue, payload, ready_at (a plain
-- decimal), the change-feed entry's events as JSON, then field, value pairs of its rare
-- fields (created_at when it is not ready_at, priority, ...). Written with no table built
-- and no record unpacked: a third of the server's time on the general form.
-- Returns per record 1 when it was stored as given, else the fields of the stored job that
-- stands for it; the one-job form returns 1 alone (a table costs the reply more).
if #ARGV > 1 then
  local id, task, queue, ready_at = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
  local k = P .. 'job:' .. id
  -- stored already: a call retried after its reply was lost
  if rcall('EXISTS', k) == 1 then return {rcall('HGETALL', k)} end
  local qk, tk = enqueue_keys(queue, task)
  local created_at, priority = ready_at, nil
  for i = 7, #ARGV, 2 do
    local field = ARGV[i]
    if field == 'created_at' then created_at = ARGV[i + 1]
    elseif field == 'priority' then priority = ARGV[i + 1] end
  end
  -- (a created_at pair is written twice, the same value)
  rcall('HSET', k, 'id', id, 'task', task, 'payload', ARGV[4], 'queue', queue,
    'state', 'queued', 'created_at', created_at, 'ready_at', ready_at, unpk(ARGV, 7))
  -- ZADD reads '<ready_at>e3' as ready_score computes it with no priority
  rcall('ZADD', qk[1], priority and ready_score(priority, ready_at) or ready_at .. 'e3', id)
  rcall('ZADD', tk, '0', id)
  rcall('ZADD', qk[2], '0', id)
  rcall('HINCRBY', qk[3], qk[4], '1')
  write_events(ARGV[6], '1')
  wake(queue)
  return 1
end
local out = {}
for _, rec in ipairs(cmsgpack.unpack(ARGV[1])) do
  local id, new = store(rec)
  if new then out[#out + 1] = 1 else out[#out + 1] = redis.call('HGETALL', jkey(id)) end
end
notify()
return out
