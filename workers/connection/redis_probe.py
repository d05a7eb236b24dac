"""A start-up look at the Redis the settings name, so a wrong deployment stops the process.

Workers wait out an unreachable Redis (it may be restarting), but some mistakes never mend:
no sentinel answering, a service name the sentinels do not watch, a plain Redis listed as a
sentinel, a sentinel given as REDIS_URL, a password or user the server refuses, an ACL user
without the permissions postroom needs, a TLS handshake that fails. These stop the process
with the setting to fix (redis_refusal.py words the credential and TLS ones).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from typing import Any, cast

import redis
from redis.exceptions import AuthenticationError, NoPermissionError, NoScriptError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.errors import ConfigError
from config.settings import PostroomSettings
from workers.connection.connections import PostroomRedisSettings, describe, sentinel_kwargs
from workers.connection.redis_refusal import refusal, tls_failure
from workers.store.keys import Keys

logger = logging.getLogger(__name__)

SENTINELS = "POSTROOM_REDIS_SENTINELS"
SENTINEL_MASTER = "POSTROOM_REDIS_SENTINEL_MASTER"
SENTINEL_PASSWORD = "POSTROOM_REDIS_SENTINEL_PASSWORD"
# The SHA1 of no script: EVALSHA of it tests a permission and runs nothing.
_NO_SCRIPT = "0" * 40


def _mode(client: redis.Redis) -> str:
    """ "sentinel", "standalone" or "cluster", as the server's INFO says."""
    info = cast(dict[str, Any], client.info("server"))
    return str(info.get("redis_mode") or info.get("server_mode") or "standalone")


def _sentinel_mode(target: PostroomRedisSettings, host: str, port: int) -> str:
    """The mode of the server listed as a sentinel; RedisError/OSError when it is away."""
    with redis.Redis(host=host, port=port, **sentinel_kwargs(target)) as client:
        try:
            return _mode(client)
        except AuthenticationError as exc:
            # A data node listed as a sentinel refuses the sentinels' password too.
            mode = _mode_as_data_node(target, host, port)
            if mode is None or mode == "sentinel":
                raise ConfigError(
                    f"{SENTINEL_PASSWORD}: the sentinel at {host}:{port} refused it: {exc}"
                ) from None
            return mode


def check_sentinels(target: PostroomRedisSettings, settings: PostroomSettings) -> None:
    """Every listed address must be a sentinel, one must answer, and know the service."""
    reached: list[tuple[str, int]] = []
    unreachable: list[str] = []
    for host, port in cast(list[tuple[str, int]], target.host):
        try:
            mode = _sentinel_mode(target, host, port)
        except (RedisError, OSError) as exc:
            if tls_failure(exc):  # the same CA and certificate serve every node
                raise refusal(exc, settings, f"the sentinel at {host}:{port}") or exc from None
            unreachable.append(f"{host}:{port} ({exc})")
            continue
        if mode != "sentinel":
            raise ConfigError(
                f"{SENTINELS}: {host}:{port} is a Redis server in {mode} mode, not a sentinel: "
                f"list the sentinels' addresses (often port 26379), or set REDIS_URL to use "
                f"that server alone"
            )
        reached.append((host, port))
    if not reached:
        raise ConfigError(f"{SENTINELS}: no sentinel answered: {', '.join(unreachable)}")
    if unreachable:
        logger.warning("sentinels not answering: %s", ", ".join(unreachable))
    _check_service(target, reached, settings)


def _check_service(
    target: PostroomRedisSettings, sentinels: list[tuple[str, int]], settings: PostroomSettings
) -> None:
    """Some sentinel must name a primary for the service; then its credentials are tried."""
    watched: set[str] = set()
    for host, port in sentinels:
        try:
            with redis.Redis(host=host, port=port, **sentinel_kwargs(target)) as client:
                primary = client.sentinel_get_master_addr_by_name(target.sentinel_master)
                watched.update(cast(dict[str, Any], client.sentinel_masters()))
        except (RedisError, OSError):
            continue
        if primary is not None:
            address, primary_port = primary
            _check_primary(target, address.decode(), int(primary_port), settings)
            return
    raise ConfigError(
        f"{SENTINEL_MASTER}: the sentinels ({describe(target)}) watch no service "
        f"{target.sentinel_master!r}; they watch: {', '.join(sorted(watched)) or 'none'}"
    )


def _mode_as_data_node(target: PostroomRedisSettings, host: str, port: int) -> str | None:
    """The server's mode when the data nodes' credentials open it, else None."""
    try:
        with redis.Redis(host=host, port=port, **_node_kwargs(target)) as client:
            return _mode(client)
    except (RedisError, OSError):
        return None


def _check_primary(
    target: PostroomRedisSettings, host: str, port: int, settings: PostroomSettings
) -> None:
    """The data nodes' credentials (REDIS_USERNAME/REDIS_PASSWORD), TLS and ACL permissions
    against the primary; one that does not answer may be failing over, and is waited for
    like any outage."""
    try:
        with redis.Redis(host=host, port=port, **_node_kwargs(target)) as client:
            client.ping()
            check_access(client, settings)
    except (RedisError, OSError) as exc:
        refused = refusal(exc, settings, f"the primary at {host}:{port}")
        if refused is not None:
            raise refused from None
        logger.debug("start-up probe of the primary %s:%d: %s", host, port, exc)


def _node_kwargs(target: PostroomRedisSettings) -> dict[str, Any]:
    return {
        "username": target.username,
        "password": target.password,
        "ssl": target.ssl,
        "ssl_ca_certs": target.ssl_ca_certs,
        "ssl_certfile": target.ssl_certfile,
        "ssl_keyfile": target.ssl_keyfile,
        "ssl_check_hostname": target.ssl_check_hostname,
        "socket_connect_timeout": target.conn_timeout,
        "socket_timeout": target.conn_timeout,
    }


def check_access(client: redis.Redis, settings: PostroomSettings) -> None:
    """NoPermissionError unless the (ACL) user may run scripts on the served queues' keys
    and touch the prefix's own keys: EVALSHA of no script is refused for a missing command
    or key permission, else answers NOSCRIPT, and so changes nothing. TIME too, which the
    rate limits' script calls (a script's own calls are checked only when it runs)."""
    client.time()
    keys = Keys(settings.key_prefix)
    names = [keys.of(queue).queue for queue in settings.worker_queues] + [keys.control_queue()]
    for name in names:
        try:
            client.exists(name)
            with contextlib.suppress(NoScriptError):
                client.evalsha(_NO_SCRIPT, 1, name)
        except NoPermissionError as exc:
            raise NoPermissionError(f"{exc}: {name}") from None


def check_server(target: PostroomRedisSettings, variable: str, settings: PostroomSettings) -> None:
    """A REDIS_URL that is in fact a sentinel or a Cluster node is refused, as are wrong
    credentials, missing ACL permissions and a failed TLS handshake; an unreachable server is
    waited for."""
    try:
        with redis.Redis(host=str(target.host), port=target.port, **_node_kwargs(target)) as client:
            mode = _mode(client)
            if mode not in ("sentinel", "cluster"):
                check_access(client, settings)
    except (RedisError, OSError) as exc:
        refused = refusal(exc, settings, f"Redis at {describe(target)}")
        if refused is None and isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
            refused = _other_protocol(target, variable)  # dropped or silent, not an answer
        if refused is not None:
            raise refused from None
        logger.debug("start-up probe of %s: %s", describe(target), exc)
        return
    if mode == "sentinel":
        raise ConfigError(
            f"{variable}: {target.host}:{target.port} is a Redis Sentinel, not a data server: "
            f"set {SENTINELS}={target.host}:{target.port} and {SENTINEL_MASTER} instead"
        )
    if mode == "cluster":
        raise ConfigError(
            f"{variable}: {target.host}:{target.port} is a node of a Redis Cluster, whose other "
            f"slots one connection cannot reach: set POSTROOM_REDIS_CLUSTER="
            f"{target.host}:{target.port} instead"
        )


def _other_protocol(target: PostroomRedisSettings, variable: str) -> ConfigError | None:
    """A server that speaks the other protocol (TLS where plain was set, or plain where TLS
    was): a TLS port drops a plain command, a plain port never answers a TLS hello. Either
    would look like an outage for ever, so it is asked once in the other protocol."""
    where = describe(target)
    try:
        with socket.create_connection((str(target.host), target.port), target.conn_timeout) as sock:
            sock.settimeout(target.conn_timeout)
            if target.ssl:
                sock.sendall(b"PING\r\n")
                if sock.recv(64)[:1] in (b"+", b"-"):
                    return ConfigError(
                        f"{variable}: Redis at {where} speaks plain Redis, not TLS: use "
                        f"redis:// and leave POSTROOM_REDIS_TLS unset, or enable TLS on it"
                    )
                return None
            if _speaks_tls(sock, str(target.host)):
                return ConfigError(
                    f"{variable}: Redis at {where} speaks TLS only: use rediss:// (or "
                    f"POSTROOM_REDIS_TLS=true) with POSTROOM_REDIS_CA_FILE"
                )
    except OSError:
        return None
    return None


def _speaks_tls(sock: socket.socket, host: str) -> bool:
    """Whether the server completes a TLS handshake, or answers one with a TLS alert."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(sock, server_hostname=host):
            return True
    except ssl.SSLError as exc:
        return "ALERT" in str(exc.reason)


def check_deployment(target: PostroomRedisSettings, settings: PostroomSettings) -> None:
    """Stop with a ConfigError naming the setting when `target` cannot be the right Redis."""
    if target.sentinel:
        check_sentinels(target, settings)
    elif target.unix_socket_path is None:
        check_server(target, "REDIS_URL" if settings.redis_url else "REDIS_HOST", settings)
