-- Two forms. One argument: ARGV[1], the records, a msgpack array of records, each an array in
-- the order of FIELDS. More: one new queued job with no key, unique key or expiry (the common
-- delay(), see codec.py one_args), flat: id, task, queue, its ready score, payload,
-- created_at ('' when it is ready_at), ready_at, the change-feed entry's events as JSON,
-- then field, value pairs of its other set fields. Written with no table built and no record
-- unpacked: a third of the server's time on the general form.
-- Returns per record 1 when it was stored as given, else the fields of the stored job that
-- stands for it.
if #ARGV > 1 then
  local id, task, queue = ARGV[1], ARGV[2], ARGV[3]
  -- `all` holds every stored id: taken already means a call retried after its reply was lost
  if rcall('ZADD', P .. 'all', 'NX', '0', id) == 0 then
    return {rcall('HGETALL', jkey(id))}
  end
  local ready_at = ARGV[7]
  local created_at = ARGV[6] ~= '' and ARGV[6] or ready_at
  rcall('HSET', jkey(id), 'id', id, 'task', task, 'payload', ARGV[5], 'queue', queue,
    'state', 'queued', 'created_at', created_at, 'ready_at', ready_at, unpk(ARGV, 9))
  rcall('ZADD', P .. 'ready:' .. queue, ARGV[4], id)
  rcall('ZADD', P .. 'bytask:' .. task, '0', id)
  rcall('ZADD', P .. 'byqueue:' .. queue, '0', id)
  rcall('HINCRBY', P .. 'counts', 'queued|' .. queue, '1')
  write_events(ARGV[8], '1')
  wake(queue)
  return {1}
end
local out = {}
for _, rec in ipairs(cmsgpack.unpack(ARGV[1])) do
  local id, new = store(rec)
  if new then out[#out + 1] = 1 else out[#out + 1] = redis.call('HGETALL', jkey(id)) end
end
notify()
return out
