-- ARGV[1]: the records, a msgpack array of records, each an array in the order of FIELDS.
-- Returns per record 1 when it was stored as given, else the fields of the stored job that
-- stands for it.
local out = {}
for _, rec in ipairs(cmsgpack.unpack(ARGV[1])) do
  local id, new = store(rec)
  if new then out[#out + 1] = 1 else out[#out + 1] = redis.call('HGETALL', jkey(id)) end
end
notify()
return out
