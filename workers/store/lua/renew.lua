local active, lease = KEYS[1], ARGV[1]
local running, recovered = ARGV[2], ARGV[3]
local lease_end = clock_ms() + tonumber(lease)
local renewed, lost = {}, {}
for i = 4, #ARGV, 2 do
    local token, id = ARGV[i], ARGV[i + 1]
    local marker = redis.call('GET', running .. id)
    if marker == token then
        renewed[#renewed + 1] = lease_end
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
