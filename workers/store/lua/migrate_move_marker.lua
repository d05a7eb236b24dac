local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 'gone' end
if redis.call('EXISTS', KEYS[2]) == 1 then
    if redis.call('GET', KEYS[1]) ~= redis.call('GET', KEYS[2]) then return 'conflict' end
elseif ARGV[1] ~= '1' then
    if ttl == -1 then ttl = 0 end
    redis.call('RESTORE', KEYS[2], ttl, redis.call('DUMP', KEYS[1]))
end
if ARGV[1] ~= '1' then redis.call('DEL', KEYS[1]) end
return 'moved'
