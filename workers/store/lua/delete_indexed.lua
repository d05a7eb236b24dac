for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 1, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
