local active, now, lease = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local running, lock, recovered = ARGV[3], ARGV[4], ARGV[5]
local renewed, lost = {}, {}
for i = 6, #ARGV, 2 do
    local token, id = ARGV[i], ARGV[i + 1]
    local marker = redis.call('GET', running .. id)
    if marker == token then
        redis.call('SET', lock .. id, token, 'PX', lease)
        renewed[#renewed + 1] = now + tonumber(lease)
        renewed[#renewed + 1] = id
    else
        lost[#lost + 1] = id
        if marker and tonumber(redis.call('GET', recovered .. id) or '0') > 0 then
            redis.call('DECR', recovered .. id)
        end
    end
end
if #renewed > 0 then redis.call('ZADD', active, unpack(renewed)) end
return lost
