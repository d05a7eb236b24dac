if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local lease_end = redis.call('ZSCORE', KEYS[2], ARGV[1])
if lease_end and tonumber(lease_end) > clock_ms() then  -- running, its lease live
    redis.call('ZADD', KEYS[6], ARGV[4], ARGV[1])
    return 2
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[3])
redis.call('HINCRBY', KEYS[7], 'cancelled', 1)
redis.call('ZADD', KEYS[8], ARGV[4], ARGV[1])
return 1
