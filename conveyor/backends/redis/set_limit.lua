-- ARGV: limit name, its JSON (limiting.lua). Stores the limit; jobs its old numbers held
-- back are looked at again by the next claim (due at 0: whatever the store's clock reads).
redis.call('HSET', P .. 'limits', ARGV[1], ARGV[2])
local prefix = ARGV[1] .. '\31'
for _, ref in ipairs(redis.call('ZRANGE', P .. 'limit_wake', 0, -1)) do
  if string.sub(ref, 1, #prefix) == prefix then
    redis.call('ZADD', P .. 'limit_wake', 0, ref)
  end
end
return 1
