-- One queue's ready or delayed jobs, any number per call (keys baked in: enqueue_batch.py).
local queue, added, written, wake = KEYS[1], {}, {}, false
for a = 1, #ARGV, 4 do
    local payload, ttl, score, id = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    if redis.call('EXISTS', $JOB .. id, $RESULT .. id) > 0 then
        written[#written + 1] = 0
    else
        redis.call('SET', $JOB .. id, payload, 'PX', ttl)
        added[#added + 1] = score
        added[#added + 1] = id
        if not wake and tonumber(score) < 0 then wake = true end
        written[#written + 1] = 1
    end
end
for i = 1, #added, 1000 do  -- unpack() is bounded by Lua's C stack
    redis.call('ZADD', queue, unpack(added, i, math.min(i + 999, #added)))
end
if wake and redis.call('LLEN', $WAKE) == 0 then redis.call('LPUSH', $WAKE, '1') end
return written
