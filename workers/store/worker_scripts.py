"""The worker's scripts: claiming ready jobs, renewing leases and finishing runs, a batch per call.

arq spends per job a WATCH/MULTI claim, a MULTI to read the job and count the try, and a
MULTI to finish; postroom added a pipeline for its running marker and active set. Here the
claim does all the start-of-run writes of a batch of jobs, and the finish all the end-of-run
writes of the runs that ended together, each atomically.
"""

from __future__ import annotations

from workers.store.keys import QueueKeys
from workers.store.priority import LUA_BAND_VALUES
from workers.store.scripts import LuaScript, lua_string

# How long arq keeps a job's try counter (its own constant, 88400 s, kept for compatibility).
RETRY_TTL_S = 88400

# KEYS: queue, active set, result index. ARGV: now ms, how many jobs to claim, how many ready
# ids to look at at most, the lease ms, then the key prefixes of a job's payload, try counter,
# running marker and recovery counter (keys.QueueKeys, all under the queue's hash tag), this
# worker's id, the first number of this claim's lease tokens, the marker's TTL ms,
# the try counter's TTL s, the oldest finish time whose result is kept (ms), and whether a run
# whose lease lapsed may be retaken now ('1') or only after its worker had time to renew it
# ('0', in the first moments after this worker reconnected: a Redis restart lapses every
# lease at once, and their live workers renew them as they reconnect).
#
# Promotes every waiting job whose time has come into its band (priority.py), then claims
# ready jobs in priority order, skipping those running (they stay in the queue until they
# finish; those whose lease is live are skipped without a command).
# A run's lease is its job's score in the active set, when it runs out on Redis's clock (TIME,
# not the worker's: a worker whose clock ran ahead would take live runs for lapsed ones); no
# key of its own, so claiming a job is two writes, not three. Claiming a job sets its
# running marker to the run's lease token `<worker>/<n>` (one SET NX), which fences every
# later write of the run (RENEW, FINISH, progress: a run whose marker is no longer its token
# has lost the job); reads its payload and counts its try (a first try by one SET NX of its
# counter, INCR and EXPIRE after that); and adds it to the active set, scored by its lease's
# end. A marker found in place names a run that never finished (its worker died, or lost its
# lease): that try is not counted again, and the recovery is. Also drops the result index's
# expired entries (the results themselves expire on their own), here once per claim instead
# of once per job.
# Returns, per job (CLAIMED_FIELDS): id, score, payload (nil if expired), try, previous
# marker (nil if none), lease token, recoveries so far.
CLAIMED_FIELDS = 7
CLAIM = LuaScript.file("clock", "bands", "claim", **LUA_BAND_VALUES)

# KEYS: the active set. ARGV: the lease ms, the key prefixes of a job's running marker and
# recovery counter, then a lease token and job id per running job.
#
# Renews each run's lease that is still its own (its marker holds its token), moving its end
# in the active set (on Redis's clock, as CLAIM), also when it lapsed meanwhile (no other
# worker took the job: its claim would have replaced the marker). Returns the ids of the runs
# that lost their job: another worker claimed it (the run's recovery, counted by that claim,
# is taken back, since this worker did not die) or it ended without them.
RENEW = LuaScript.file("clock", "renew")

# Baked in ($NAMES, see `finish_script`): the queue's keys (queue, active set, stats, result
# index, dead-letter index), the key prefixes of a job's running marker, try counter,
# payload, result, try errors, dead letter and 429 deferral count, how many results the
# queue keeps, how long
# try errors are kept (s). KEYS: the queue (declared so that a Redis Cluster routes the call
# to the queue's slot, which holds every key the script touches). ARGV: the ends of a batch of
# runs, FINISH_FIELDS each: job id, the run's lease token, what ("finish", "dead", "retry",
# "defer" or "release"), result data ('' for none), its TTL ms ('' for forever), the retry's score
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
# band); "defer" moves it so too but refunds its try and keeps no error (a rate limit or a
# provider's 429 held it back); "release" leaves it ready and refunds its try (a run put
# back by a shutdown).
# Each run's writes are per job only where they must be; the rest are one command for the
# whole batch: one ZREM from the active set and one from the queue, one HINCRBY per counter,
# one ZADD to the result index, one DEL.
FINISH_FIELDS = 10


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
        "RUNNING": keys.running(""),
        "RETRY": keys.tries(""),
        "JOB": keys.job(""),
        "RESULT": keys.result(""),
        "ERRORS": keys.try_errors(""),
        "LIMITED": keys.rate_limited(""),
        "LETTER": keys.dead_record(""),
        "DEAD": keys.dead_index,
    }
    literals = {k: lua_string(v) for k, v in names.items()}
    return LuaScript.file(
        "bands",
        "finish",
        **LUA_BAND_VALUES,
        **literals,
        KEEP=results_kept,
        FIELDS=FINISH_FIELDS,
        ERRORS_TTL=max(errors_kept_s, 1),
    )


# KEYS: the queue's partition count key (keys.QueueKeys.partitions_used). ARGV: this worker's
# partition count. Raises the queue's count to it; returns the count, the most it ever had.
PARTITIONS_USED = LuaScript.file("partitions_used")
