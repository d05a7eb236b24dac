local n_idx, n_job = $INDEXES, $PER_JOB
local id, dry = ARGV[1], ARGV[2] == '1'
local function old_idx(i) return KEYS[2 + i] end
local function new_idx(i) return KEYS[2 + n_idx + i] end
local function old_key(i) return KEYS[2 + 2 * n_idx + i] end
local function new_key(i) return KEYS[2 + 2 * n_idx + n_job + i] end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'running', 0} end
local score = redis.call('ZSCORE', old_idx(1), id)
local has_result = redis.call('EXISTS', old_key(2)) == 1
local has_dead = redis.call('EXISTS', old_key(4)) == 1
local what = 'stale'
if score then
    what = tonumber(score) < 0 and 'ready' or 'delayed'
elseif has_dead then
    what = 'dead'
elseif has_result then
    what = 'completed'
end
if what == 'stale' then  -- only index entries whose keys expired: drop them, touch nothing new
    if not dry then
        for i = 1, n_idx do redis.call('ZREM', old_idx(i), id) end
        redis.call('ZREM', KEYS[2], id)
    end
    return {what, 0}
end
-- queued, finished or dead in the new layout already: never overwrite it
if redis.call('ZSCORE', new_idx(1), id) or redis.call('EXISTS', new_key(1), new_key(2),
        new_key(4)) > 0 then
    return {'conflict', 0}
end
local recovered = 0
if score and (redis.call('ZSCORE', KEYS[2], id) or redis.call('EXISTS', old_key(6)) == 1) then
    recovered = 1
end
if dry then return {what, recovered} end
local keep = {[1] = score ~= false, [2] = has_result, [3] = has_dead, [4] = true}
for i = 1, n_idx do
    local s = redis.call('ZSCORE', old_idx(i), id)
    if s and keep[i] then redis.call('ZADD', new_idx(i), s, id) end
    redis.call('ZREM', old_idx(i), id)
end
redis.call('ZREM', KEYS[2], id)
for i = 1, n_job do
    local ttl = redis.call('PTTL', old_key(i))
    if ttl ~= -2 then
        if ttl == -1 then ttl = 0 end
        redis.call('RESTORE', new_key(i), ttl, redis.call('DUMP', old_key(i)), 'REPLACE')
        redis.call('DEL', old_key(i))
    end
end
return {what, recovered}
