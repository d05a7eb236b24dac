local used = tonumber(redis.call('GET', KEYS[1]) or '1')
local mine = tonumber(ARGV[1])
if mine > used then
    redis.call('SET', KEYS[1], mine)
    used = mine
end
return used
