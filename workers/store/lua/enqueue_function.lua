local function enqueue(job, result, queue, wake, payload, ttl, score, id, once, once_ttl)
    if redis.call('EXISTS', job, result) > 0 then return 0 end
    if once and not redis.call('SET', once, '1', 'NX', 'PX', once_ttl) then return 0 end
    redis.call('SET', job, payload, 'PX', ttl)
    redis.call('ZADD', queue, score, id)
    if tonumber(score) < 0 and redis.call('LLEN', wake) == 0 then
        redis.call('LPUSH', wake, '1')
    end
    return 1
end
