"""The smallest ACL rule a postroom user needs: its prefix's keys and channels, and the
commands of its paths, none of the dangerous ones.

Worked out by running the workers, the client, the admin API and the CLI under a user with
this rule and nothing failed (tests/test_redis_auth.py runs them so): scripts (EVALSHA,
SCRIPT LOAD, and what the scripts call), reads and writes of the prefix's keys, SCAN (live
workers), blocking pops (idle workers), pub/sub (real-time channels), INFO (the start-up
probe), TIME (the rate limits' script reads Redis' clock). Dangerous commands stay out
(FLUSHALL, KEYS, CONFIG, DEBUG, RESTORE, ...), and so do FUNCTION and SCRIPT FLUSH/KILL,
which would reach other deployments on the same server.
"""

from __future__ import annotations

from workers.store.keys import Keys

COMMANDS = (
    "-@all",
    "+@read",
    "+@write",
    "+@keyspace",
    "+@scripting",
    "+@pubsub",
    "+@blocking",
    "+@connection",
    "-@dangerous",
    "-function",
    "-script|flush",
    "-script|kill",
    "+info",
    "+time",
)
# On a Cluster, redis-py's client also reads the slot map from the nodes.
CLUSTER_COMMANDS = ("+cluster|slots",)


def acl_rule(prefix: str) -> str:
    """The rule for ACL SETUSER (after `on >password`) for one deployment's `prefix`."""
    keys = Keys(prefix)
    patterns = [f"~{pattern}" for pattern in keys.acl_key_patterns()]
    return " ".join(
        ["resetkeys", *patterns, "resetchannels", f"&{keys.acl_channel_pattern()}", *COMMANDS]
    )
