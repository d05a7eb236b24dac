local counters = redis.call('HGETALL', KEYS[1])
for i = 1, #counters, 2 do
    redis.call('HINCRBY', KEYS[2], counters[i], counters[i + 1])
end
redis.call('DEL', KEYS[1])
if redis.call('ZCARD', KEYS[4]) == 0 then redis.call('DEL', KEYS[3], KEYS[5]) end
if ARGV[1] == '1' and redis.call('LLEN', KEYS[6]) == 0 then redis.call('LPUSH', KEYS[6], '1') end
return counters
