-- ARGV: records (see read_record). Returns per record 1 when it was stored as given, else the
-- fields of the stored job that stands for it.
local out = {}
local i = 1
while i <= #ARGV do
  local rec, flat
  rec, flat, i = read_record(i)
  local id, new = store(rec, flat)
  if new then out[#out + 1] = 1 else out[#out + 1] = redis.call('HGETALL', jkey(id)) end
end
notify()
return out
