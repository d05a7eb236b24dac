local bucket, held = KEYS[1], KEYS[2]
local mode, interval, burst = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tolerance = (burst - 1) * interval
local state = redis.call('HMGET', bucket, 'tat', 'w', 'n', 'p', 'throttled')
local tat = tonumber(state[1]) or now
local window, count, previous = tonumber(state[2]) or 0, tonumber(state[3]) or 0, tonumber(state[4]) or 0
local throttled = tonumber(state[5]) or 0
local started = 0
local replies = {}
if mode == 'take' then
    -- A claim batch: grant at most `want` starts now, after giving back `refund` unused ones.
    local want, refund = tonumber(ARGV[4]), tonumber(ARGV[5])
    tat = tat - refund * interval
    local base = math.max(tat, now)
    local granted = math.floor((now - base) / interval + burst + 1e-9)
    granted = math.max(0, math.min(want, granted))
    tat = base + granted * interval
    local wait = 0
    if granted < want then
        throttled = throttled + 1
        wait = math.max(1, math.ceil(tat - tolerance - now))
    end
    started = granted
    replies = {granted, wait}
else
    -- 'reserve': a start slot per job id (ARGV[5..]); a job whose slot is at most `max_wait`
    -- ms away waits for it, one further away is deferred to it and its slot held until then.
    local max_wait = tonumber(ARGV[4])
    redis.call('ZREMRANGEBYSCORE', held, '-inf', now - 3600000)
    for i = 5, #ARGV do
        local id = ARGV[i]
        local slot = tonumber(redis.call('ZSCORE', held, id))
        if not slot then
            local base = math.max(tat, now)
            slot = math.max(now, tat - tolerance)
            tat = base + interval
            if slot - now > max_wait then redis.call('ZADD', held, slot, id) end
        end
        local wait = slot - now
        if wait <= max_wait then
            redis.call('ZREM', held, id)
            started = started + 1
            if wait > 0 then throttled = throttled + 1 end
            replies[#replies + 1] = math.max(0, math.ceil(wait))
        else
            throttled = throttled + 1
            replies[#replies + 1] = -math.ceil(wait)
        end
    end
end
-- Starts per 5-second window, this one and the one before: the current rate, for the admin API.
local this_window = math.floor(now / 5000)
if this_window == window + 1 then
    previous, count = count, 0
elseif this_window ~= window then
    previous, count = 0, 0
end
count = count + started
redis.call('HSET', bucket, 'tat', string.format('%.3f', tat), 'w', this_window, 'n', count,
    'p', previous, 'throttled', throttled)
redis.call('PEXPIRE', bucket, math.ceil(math.max(tat - now, 0)) + 3600000)
return replies
