"""Which Redis errors pass by themselves: a write that hit one is worth repeating."""

from __future__ import annotations

from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    ConnectionError,
    OutOfMemoryError,
    ReadOnlyError,
    TimeoutError,
    TryAgainError,
)

# Connection lost or refused, Redis loading its dataset after a restart (BusyLoadingError is a
# ConnectionError), a replica after a failover (READONLY), a Cluster resharding or electing a
# primary (TRYAGAIN, CLUSTERDOWN), memory full until results and dead letters expire.
_TRANSIENT = (
    ConnectionError,
    TimeoutError,
    ReadOnlyError,
    TryAgainError,
    ClusterDownError,
    OutOfMemoryError,
    OSError,
)
# Connection errors that a retry does not mend: the credentials are wrong.
_PERMANENT = (AuthenticationError, AuthorizationError)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, _TRANSIENT) and not isinstance(error, _PERMANENT)
