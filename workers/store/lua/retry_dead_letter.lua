local lease_end = redis.call('ZSCORE', KEYS[1], ARGV[4])
if (lease_end and tonumber(lease_end) > clock_ms()) or redis.call('EXISTS', KEYS[2]) == 0 then
    return 0
end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
enqueue(KEYS[7], KEYS[8], KEYS[9], KEYS[10], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[4])
return 1
