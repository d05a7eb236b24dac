-- KEYS: one string key. ARGV: the value read, the value to put in its place.
-- Compare-and-set: replaced (its TTL kept) only while it still holds what was read, so a
-- worker's write meanwhile (the job finished, its record deleted) is never undone.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
