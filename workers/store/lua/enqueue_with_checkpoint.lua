local written = {}
local k = 2
for a = 3, #ARGV, 5 do
    local once = nil
    if ARGV[a + 4] ~= '' then once = KEYS[k + 4] end
    written[#written + 1] = enqueue(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV[a],
                                    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], once, ARGV[a + 4])
    k = k + (once and 5 or 4)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return written
