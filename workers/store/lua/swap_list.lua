-- KEYS: one list key. ARGV: how many items were read (n), those n items, then the n items to
-- put in their place. Compare-and-set of the whole list, its TTL kept: replaced only while it
-- still holds exactly what was read (a try error pushed meanwhile leaves it as it is).
local n = tonumber(ARGV[1])
local now = redis.call('LRANGE', KEYS[1], 0, -1)
if #now ~= n then return 0 end
for i = 1, n do
    if now[i] ~= ARGV[i + 1] then return 0 end
end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
for i = 1, n do redis.call('RPUSH', KEYS[1], ARGV[n + i + 1]) end
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
