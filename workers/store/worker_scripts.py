"""The worker's scripts: claiming ready jobs, renewing leases and finishing runs, a batch per call.

arq spends per job a WATCH/MULTI claim, a MULTI to read the job and count the try, and a
MULTI to finish; postroom added a pipeline for its running marker and active set. Here the
claim does all the start-of-run writes of a batch of jobs, and the finish all the end-of-run
writes of the runs that ended together, each atomically.
"""

from __future__ import annotations

import string

from workers.store.keys import QueueKeys
from workers.store.priority import LUA_BANDS
from workers.store.scripts import LuaScript

# How long arq keeps a job's try counter (its own constant, 88400 s, kept for compatibility).
RETRY_TTL_S = 88400

# KEYS: queue, active set, result index. ARGV: now ms, how many jobs to claim, how many ready
# ids to look at at most, the lease ms, then the key prefixes of a job's lease, payload, try
# counter, running marker and recovery counter (keys.QueueKeys, all under the queue's hash
# tag), this worker's id, the first number of this claim's lease tokens, the marker's TTL ms,
# the try counter's TTL s, the oldest finish time whose result is kept (ms), and whether a run
# whose lease lapsed may be retaken now ('1') or only after its worker had time to renew it
# ('0', in the first moments after this worker reconnected: a Redis restart lapses every
# lease at once, and their live workers renew them as they reconnect).
#
# Promotes every waiting job whose time has come into its band (priority.py), then claims
# ready jobs in priority order, skipping those running (they stay in the queue until they
# finish; those whose lease is live are skipped without a command, the rest by SET NX).
# Claiming a job sets its lease, reads its payload and counts its try; sets its running
# marker to the run's lease token `<worker>/<n>`, which fences every later write of the run
# (RENEW, FINISH, progress: a run whose marker is no longer its token has lost the job); and
# adds it to the active set, scored by when the lease runs out. A marker found in place names
# a run that never finished (its worker died, or lost its lease): that try is not counted
# again, and the recovery is. Also drops the result index's expired entries (the results
# themselves expire on their own), here once per claim instead of once per job.
# Returns, per job (CLAIMED_FIELDS): id, score, payload (nil if expired), try, previous
# marker (nil if none), lease token, recoveries so far.
CLAIMED_FIELDS = 7
CLAIM = LuaScript(
    LUA_BANDS
    + """
local queue, active, now, want = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local scan, lease = tonumber(ARGV[3]), ARGV[4]
local lock, job, retry, running, recovered = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local worker, serial, marker_ttl, retry_ttl = ARGV[10], tonumber(ARGV[11]), ARGV[12], ARGV[13]
local retake = ARGV[15] == '1'
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[14])
local leased, live = {}, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', active, '(' .. now, '+inf')) do
    leased[id] = true
    live = live + 1
end
local due = redis.call('ZRANGEBYSCORE', queue, 0, now, 'WITHSCORES', 'LIMIT', 0, 1000)
for i = 1, #due, 2 do
    local score = tonumber(due[i + 1])
    redis.call('ZADD', queue, fmt(math.floor(score) - offset_of(score)), due[i])
end
local claimed, leases, count, seen = {}, {}, 0, 0
local lease_end = tonumber(now) + tonumber(lease)
while count < want and seen < scan do
    -- Enough for the jobs still wanted and the running ones that may come first, no more.
    local page = math.min(want - count + live, 200, scan - seen)
    local batch = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', seen, page)
    if #batch == 0 then break end
    for i = 1, #batch, 2 do
        local id = batch[i]
        local free = count < want and not leased[id]
        if free and not retake and redis.call('EXISTS', running .. id) == 1 then free = false end
        local token = worker .. '/' .. (serial + count)
        if free and redis.call('SET', lock .. id, token, 'NX', 'PX', lease) then
            count = count + 1
            local lost_by = redis.call('SET', running .. id, token, 'PX', marker_ttl, 'GET')
            local try, recoveries = nil, 0
            if lost_by then
                try = tonumber(redis.call('GET', retry .. id))
                recoveries = redis.call('INCR', recovered .. id)
                redis.call('PEXPIRE', recovered .. id, marker_ttl)
            end
            if not try then try = redis.call('INCR', retry .. id) end
            redis.call('EXPIRE', retry .. id, retry_ttl)
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
"""
)

# KEYS: the active set. ARGV: now ms, the lease ms, the key prefixes of a job's running
# marker, lease and recovery counter, then a lease token and job id per running job.
#
# Renews each run's lease that is still its own (its marker holds its token), setting it
# again if it lapsed meanwhile (no other worker took the job: its claim would have replaced
# the marker), and moves its end in the active set. Returns the ids of the runs that lost
# their job: another worker claimed it (the run's recovery, counted by that claim, is taken
# back, since this worker did not die) or it ended without them.
RENEW = LuaScript("""
local active, now, lease = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local running, lock, recovered = ARGV[3], ARGV[4], ARGV[5]
local renewed, lost = {}, {}
for i = 6, #ARGV, 2 do
    local token, id = ARGV[i], ARGV[i + 1]
    local marker = redis.call('GET', running .. id)
    if marker == token then
        redis.call('SET', lock .. id, token, 'PX', lease)
        renewed[#renewed + 1] = now + tonumber(lease)
        renewed[#renewed + 1] = id
    else
        lost[#lost + 1] = id
        if marker and tonumber(redis.call('GET', recovered .. id) or '0') > 0 then
            redis.call('DECR', recovered .. id)
        end
    end
end
if #renewed > 0 then redis.call('ZADD', active, unpack(renewed)) end
return lost
""")

# Baked in ($NAMES, see `finish_script`): the queue's keys (queue, active set, stats, result
# index, dead-letter index), the key prefixes of a job's lease, running marker, try counter,
# payload, result, try errors and dead letter, how many results the queue keeps, how long
# try errors are kept (s). KEYS: the queue (declared so that a Redis Cluster routes the call
# to the queue's slot, which holds every key the script touches). ARGV: the ends of a batch of
# runs, FINISH_FIELDS each: job id, the run's lease token, what ("finish", "dead", "retry" or
# "release"), result data ('' for none), its TTL ms ('' for forever), the retry's score
# increment, now ms, the counters to increment (space separated, '' for none), the try's
# error (JSON, '' for none), and for "dead" the dead letter's JSON up to its error list.
#
# A run whose marker is no longer its token has lost the job to another worker (or the job
# ended without it): nothing of its end is written, and its id is returned.
# "finish" stores the result, indexes it and deletes the oldest results past the queue's
# bound (CLAIM drops those past `keep_result`), and removes the job and its try errors;
# "dead" does the same and stores the dead letter, its error list the try errors kept so far
# and this try's; "retry" keeps the try's error and moves the job out of its band to wait for
# its backoff, keeping its priority (where arq would ZINCRBY it to a later time in the same
# band); "release" leaves it ready and refunds its try (a run put back by a shutdown).
# Each run's writes are per job only where they must be; the rest are one command for the
# whole batch: one ZREM from the active set and one from the queue, one HINCRBY per counter,
# one ZADD to the result index, one DEL.
FINISH_FIELDS = 10
_FINISH = string.Template(
    LUA_BANDS
    + """
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
        gone[#gone + 1] = $LOCK .. id
        gone[#gone + 1] = $RUNNING .. id
        for name in string.gmatch(ARGV[j + 7], '%S+') do counts[name] = (counts[name] or 0) + 1 end
        if what == 'finish' or what == 'dead' then
            done[#done + 1] = id
            gone[#gone + 1] = $RETRY .. id
            gone[#gone + 1] = $JOB .. id
            gone[#gone + 1] = $ERRORS .. id
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
        elseif what == 'retry' then
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
"""
)


def lua_string(text: str) -> str:
    """`text` as a Lua string literal: every byte outside printable ASCII, and quote and
    backslash, as a decimal escape, so no key prefix can break out of it."""
    safe = (chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\{b:03d}" for b in text.encode())
    return '"' + "".join(safe) + '"'


def finish_script(keys: QueueKeys, *, results_kept: int, errors_kept_s: int) -> LuaScript:
    """One queue's FINISH script, its key names part of the source.

    Encoding a finish's arguments was a sixth of a worker's CPU with every key passed in
    KEYS; only what differs per job is sent now. Every name shares the queue's hash tag, so
    the script runs on one Cluster slot.
    """
    names = {
        "QUEUE": keys.queue,
        "ACTIVE": keys.active,
        "STATS": keys.stats,
        "RESULTS": keys.results,
        "LOCK": keys.lease(""),
        "RUNNING": keys.running(""),
        "RETRY": keys.tries(""),
        "JOB": keys.job(""),
        "RESULT": keys.result(""),
        "ERRORS": keys.try_errors(""),
        "LETTER": keys.dead_record(""),
        "DEAD": keys.dead_index,
    }
    literals = {k: lua_string(v) for k, v in names.items()}
    source = _FINISH.substitute(
        literals, KEEP=results_kept, FIELDS=FINISH_FIELDS, ERRORS_TTL=max(errors_kept_s, 1)
    )
    return LuaScript(source)


# KEYS: the queue's partition count key (keys.QueueKeys.partitions_used). ARGV: this worker's
# partition count. Raises the queue's count to it; returns the count, the most it ever had.
PARTITIONS_USED = LuaScript(
    """
local used = tonumber(redis.call('GET', KEYS[1]) or '1')
local mine = tonumber(ARGV[1])
if mine > used then
    redis.call('SET', KEYS[1], mine)
    used = mine
end
return used
"""
)
