local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if ttl == -1 then ttl = 0 end
redis.call('RESTORE', KEYS[2], ttl, redis.call('DUMP', KEYS[1]), 'REPLACE')
return 1
