local queue, active, now, want = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local scan, lease = tonumber(ARGV[3]), ARGV[4]
local job, retry, running, recovered = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local worker, serial, marker_ttl, retry_ttl = ARGV[9], tonumber(ARGV[10]), ARGV[11], ARGV[12]
local retake = ARGV[14] == '1'
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[13])
local clock = clock_ms()
local leased, live = {}, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', active, '(' .. clock, '+inf')) do
    leased[id] = true
    live = live + 1
end
local due = redis.call('ZRANGEBYSCORE', queue, 0, now, 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #due, 2 do
    local score = tonumber(due[i + 1])
    redis.call('ZADD', queue, fmt(math.floor(score) - offset_of(score)), due[i])
end
local claimed, leases, count, seen = {}, {}, 0, 0
local lease_end = clock + tonumber(lease)
while count < want and seen < scan do
    -- Enough for the jobs still wanted and the running ones that may come first, no more.
    local page = math.min(want - count + live, 200, scan - seen)
    local batch = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', seen, page)
    if #batch == 0 then break end
    for i = 1, #batch, 2 do
        local id = batch[i]
        local token = worker .. '/' .. (serial + count)
        -- Not leased: no run, or one whose lease lapsed (its marker is still there).
        local free = count < want and not leased[id]
        local lost_by = false
        if free and retake then
            lost_by = redis.call('SET', running .. id, token, 'PX', marker_ttl, 'GET')
        elseif free and not redis.call('SET', running .. id, token, 'NX', 'PX', marker_ttl) then
            free = false  -- a lapsed run that never ended, for its worker to renew: not yet
        end
        if free then
            count = count + 1
            local try, recoveries = nil, 0
            if lost_by then
                try = tonumber(redis.call('GET', retry .. id))
                recoveries = redis.call('INCR', recovered .. id)
                redis.call('PEXPIRE', recovered .. id, marker_ttl)
            end
            if try then
                redis.call('EXPIRE', retry .. id, retry_ttl)
            elseif redis.call('SET', retry .. id, '1', 'EX', retry_ttl, 'NX') then
                try = 1  -- its first try: one command where INCR and EXPIRE took two
            else
                try = redis.call('INCR', retry .. id)
                redis.call('EXPIRE', retry .. id, retry_ttl)
            end
            claimed[#claimed + 1] = id
            claimed[#claimed + 1] = batch[i + 1]
            claimed[#claimed + 1] = redis.call('GET', job .. id)
            claimed[#claimed + 1] = try
            claimed[#claimed + 1] = lost_by
            claimed[#claimed + 1] = token
            claimed[#claimed + 1] = recoveries
            leases[#leases + 1] = lease_end
            leases[#leases + 1] = id
        end
    end
    seen = seen + #batch / 2
end
if count > 0 then redis.call('ZADD', active, unpack(leases)) end
return claimed
