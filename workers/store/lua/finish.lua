local queue, active, stats, results = $QUEUE, $ACTIVE, $STATS, $RESULTS
local function each_thousand(command, key, items)  -- unpack() is bounded by Lua's C stack
    for i = 1, #items, 1000 do
        local chunk = {unpack(items, i, math.min(i + 999, #items))}
        if key then
            redis.call(command, key, unpack(chunk))
        else
            redis.call(command, unpack(chunk))
        end
    end
end
local ended, done, indexed, gone, counts, refused = {}, {}, {}, {}, {}, {}
for j = 1, #ARGV, $FIELDS do
    local id, token, what, result, ttl = ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3], ARGV[j + 4]
    local now, error = ARGV[j + 6], ARGV[j + 8]
    if redis.call('GET', $RUNNING .. id) ~= token then
        refused[#refused + 1] = id
    else
        ended[#ended + 1] = id
        gone[#gone + 1] = $RUNNING .. id
        for name in string.gmatch(ARGV[j + 7], '%S+') do counts[name] = (counts[name] or 0) + 1 end
        if what == 'finish' or what == 'dead' then
            done[#done + 1] = id
            gone[#gone + 1] = $RETRY .. id
            gone[#gone + 1] = $JOB .. id
            gone[#gone + 1] = $ERRORS .. id
            gone[#gone + 1] = $LIMITED .. id
            if what == 'dead' then
                local earlier = redis.call('LRANGE', $ERRORS .. id, 0, -1)
                earlier[#earlier + 1] = error
                redis.call('SET', $LETTER .. id, ARGV[j + 9] .. table.concat(earlier, ',') .. ']}')
                redis.call('ZADD', $DEAD, tonumber(now) / 1000, id)
            end
            if result ~= '' then
                if ttl == '' then
                    redis.call('SET', $RESULT .. id, result)
                else
                    redis.call('SET', $RESULT .. id, result, 'PX', ttl)
                end
                indexed[#indexed + 1] = now
                indexed[#indexed + 1] = id
            end
        elseif what == 'retry' or what == 'defer' then
            if error ~= '' then
                redis.call('RPUSH', $ERRORS .. id, error)
                redis.call('EXPIRE', $ERRORS .. id, $ERRORS_TTL)
            end
            local score = redis.call('ZSCORE', queue, id)
            if score then  -- never put an id back that left the queue
                score = tonumber(score)
                local tag = TAG_OF_OFFSET[offset_of(score)] or 0
                local due = math.floor(score) + tonumber(ARGV[j + 5])
                redis.call('ZADD', queue, fmt(due + tag / 8), id)
            end
            if what == 'defer' and tonumber(redis.call('GET', $RETRY .. id) or '0') > 0 then
                redis.call('DECR', $RETRY .. id)  -- a deferral spends no try
            end
        elseif what == 'release' then
            if tonumber(redis.call('GET', $RETRY .. id) or '0') > 0 then
                redis.call('DECR', $RETRY .. id)
            end
        end
    end
end
if #ended == 0 then return refused end
each_thousand('ZREM', active, ended)
each_thousand('ZREM', queue, done)
for name, n in pairs(counts) do redis.call('HINCRBY', stats, name, n) end
if #indexed > 0 then
    each_thousand('ZADD', results, indexed)
    local extra = redis.call('ZCARD', results) - $KEEP
    if extra > 0 then
        local oldest = redis.call('ZPOPMIN', results, extra)
        for i = 1, #oldest, 2 do gone[#gone + 1] = $RESULT .. oldest[i] end
    end
end
each_thousand('DEL', false, gone)
return refused
