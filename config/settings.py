"""Postroom's settings, read once from the environment (and `.env`) and passed down."""

from __future__ import annotations

import getpass
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import (
    AliasChoices,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config import tls_files
from config.admin import (
    ADMIN_TOKEN_MIN_LENGTH,
    LEGACY_TOKEN_NAME,
    AdminToken,
    parse_admin_tokens,
)
from config.encryption import EncryptionSettings
from config.errors import ConfigError
from config.notify import PushSettings, SmsSettings, SmtpSettings
from config.queues import QueueName, QueueTable
from config.rate_limits import RateLimitSpec
from config.redaction import redact_credentials

ENV_PREFIX = "POSTROOM_"


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _os_user() -> str:
    """Who runs this process, for the audit trail of CLI commands (`POSTROOM_OPERATOR`)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER, as in some containers
        return "unknown"


def _address(value: Any) -> Any:
    """`host:port` (IPv6 as `[::1]:26379`) as a (host, port) pair; pairs pass through."""
    if not isinstance(value, str):
        return value
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (a port from 1 to 65535)")
    return (host, int(port))


def _tls_on(info: ValidationInfo) -> bool:
    """POSTROOM_REDIS_TLS, or a `rediss://` REDIS_URL (both read before the TLS files)."""
    url = str(info.data.get("redis_url"))
    return bool(info.data.get("redis_tls")) or url.startswith("rediss:")


class PostroomSettings(BaseSettings):
    """Everything a worker or a client needs; the seed's `REDIS_*` names keep working."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
    )

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "POSTROOM_REDIS_URL")
    )
    redis_host: str | None = Field(default=None, validation_alias="REDIS_HOST")
    redis_port: int = Field(default=6379, ge=1, le=65535, validation_alias="REDIS_PORT")
    redis_username: str | None = Field(default=None, validation_alias="REDIS_USERNAME")
    redis_password: SecretStr | None = Field(default=None, validation_alias="REDIS_PASSWORD")
    redis_db: int = Field(default=0, ge=0, validation_alias="REDIS_DB")
    # A Redis Cluster's nodes (`host:port,host:port`; one is enough, the rest are found from
    # it) for the client side (workers.cluster_client); REDIS_USERNAME/PASSWORD apply to it.
    redis_cluster: Annotated[list[str], NoDecode] = []
    # Redis Sentinel (workers/connection/connections.py): the sentinels' addresses,
    # `host:port` comma separated, and the service they watch. REDIS_USERNAME/REDIS_PASSWORD/
    # REDIS_DB are the data nodes'; the sentinels may have credentials of their own.
    # Seconds a running worker keeps retrying once Redis refuses its credentials or an ACL
    # permission (a password or rule being rolled out), before it exits non-zero.
    redis_auth_grace: float = Field(default=60.0, ge=0)
    redis_sentinels: Annotated[list[tuple[str, int]], NoDecode] = []
    redis_sentinel_master: str = Field(default="mymaster", min_length=1)
    redis_sentinel_username: str | None = None
    redis_sentinel_password: SecretStr | None = None
    # TLS to every node (sentinels included); `rediss://` in REDIS_URL turns it on too. The CA
    # file verifies the servers (else the system's CAs do); a server that asks for client
    # certificates (`tls-auth-clients yes`) gets the key file's pair (the key may sit in the
    # certificate's file, then the key file is left unset).
    redis_tls: bool = False
    redis_ca_file: FilePath | None = None
    # The server's certificate must name the host connected to (as HTTPS does): without it any
    # certificate the CA (or, unset, any public CA) signed would do. Off only for a private CA
    # whose certificates name no host.
    redis_tls_check_hostname: bool = True
    redis_key_file: FilePath | None = None
    redis_cert_file: FilePath | None = Field(default=None, validate_default=True)
    # Opt-in: after each enqueue the client waits (WAIT) until this many replicas have the
    # job, at most `enqueue_wait_timeout` seconds, else the enqueue raises NotReplicatedError.
    enqueue_wait_replicas: int = Field(default=0, ge=0)
    enqueue_wait_timeout: float = Field(default=1.0, gt=0)

    # Where the embedded Redis (and later the embedded stores) keep their data.
    data_dir: Path = Path(".postroom")
    # This machine's name among the worker hosts sharing one Redis (workers/store/host_state.py).
    host_name: str = Field(default_factory=socket.gethostname, min_length=1)
    embedded_redis_port: int = Field(default=6399, ge=1, le=65535)

    # Namespaces every key postroom owns, so several deployments (or tests) share one Redis.
    key_prefix: str = Field(default="postroom", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    queues: QueueTable = QueueTable()
    worker_queues: Annotated[list[QueueName], NoDecode] = list(QueueName)
    # Named rate limits shared by every worker process (`POSTROOM_RATE_LIMITS__SMS=10/s`):
    # a notification channel's (sms, push, email) or any name a task throttles on with
    # `ctx["throttle"](name)`; workers/runner/throttle.py.
    rate_limits: dict[str, RateLimitSpec] = {}
    # How often a job may be deferred because its provider answered "too many requests"
    # (HTTP 429 with Retry-After) before it is dead-lettered as `rate-limited`.
    max_rate_limited: int = Field(default=20, ge=0)
    task_modules: Annotated[list[str], NoDecode] = ["tasks"]

    # A cron tick found later than this (after downtime) is skipped, not replayed.
    cron_max_lateness: float = Field(default=300.0, gt=0)
    # A running job's lease: its worker renews it; if the worker dies, another worker takes
    # the job once the lease lapses, whatever the job's own timeout.
    lease_seconds: float = Field(default=15.0, gt=0)
    # How often a job may be recovered from a dead worker before it is dead-lettered.
    max_recoveries: int = Field(default=3, ge=0)
    shutdown_grace: float = Field(default=25.0, ge=0)
    # Completed results are kept this many seconds or the last `results_per_queue` of each
    # queue, whichever is fewer.
    keep_result: float = Field(default=86_400.0, ge=0)
    results_per_queue: int = Field(default=1_000, ge=1)
    # Dead letters older than this are trimmed by the cleanup cron (a queue may override it).
    dead_letter_retention: float = Field(default=7 * 86_400.0, gt=0)
    # The message store: PostgreSQL in production (`postgresql://...`), else a SQLite file in
    # `data_dir`.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "POSTROOM_DATABASE_URL")
    )
    # The tasks' services: `POSTROOM_ENCRYPTION__KEYS`, `POSTROOM_SMTP__HOST`, ...
    encryption: EncryptionSettings = EncryptionSettings()
    # Sealing of the jobs' payloads in Redis with that keyring (workers/store/sealing.py):
    # unset, on when `encryption.keys` are configured; true or false overrides (true needs
    # keys or an explicit key file, which every process must share).
    payload_encryption: bool | None = None
    # Whether log lines, spans and event dead letters carry the text of a task's or handler's
    # exception, which may quote its payload (workers/error_text.py): unset, only when
    # payloads are not sealed. The try error kept with the job has it either way.
    log_error_details: bool | None = None
    push: PushSettings = PushSettings()
    sms: SmsSettings = SmsSettings()
    smtp: SmtpSettings = SmtpSettings()
    # Messages stored encrypted stay out of the search index unless this is set: the index
    # holds their words in plaintext.
    index_encrypted_messages: bool = False
    # The cleanup cron deletes messages older than this (the job's `retentionDays` overrides).
    message_retention_days: int = Field(default=90, ge=1)
    # Domain events (workers.events): handlers run in the publishing process (false), or each
    # event becomes a job on `event_queue` run by the workers (true). The seed's variable name.
    use_queue_event_bus: bool = Field(
        default=False,
        validation_alias=AliasChoices("USE_QUEUE_EVENT_BUS", "POSTROOM_USE_QUEUE_EVENT_BUS"),
    )
    event_queue: QueueName = QueueName.NOTIFICATION
    # Which bus carries events: memory, queued (as USE_QUEUE_EVENT_BUS=true) or rabbitmq
    # (workers/events/rabbitmq/); unset, USE_QUEUE_EVENT_BUS decides.
    event_transport: Literal["memory", "queued", "rabbitmq"] | None = None
    # The RabbitMQ transport: the broker, its topic exchange, this consumer's handler group
    # (one durable queue per group), how many events a consumer runs at once, and how long a
    # publish waits for a broker that is away before it raises.
    rabbitmq_url: str | None = Field(
        default=None, validation_alias=AliasChoices("RABBITMQ_URL", "POSTROOM_RABBITMQ_URL")
    )
    event_exchange: str = Field(default="postroom.events", pattern=r"^[A-Za-z0-9_.:-]+$")
    event_group: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    event_prefetch: int = Field(default=10, ge=1, le=10_000)
    event_publish_timeout: float = Field(default=10.0, gt=0)
    # The admin API's bearer token (`POSTROOM_ADMIN_TOKEN`); without one it serves only
    # when `admin_local_only` says it is reachable from this machine alone.
    admin_token: SecretStr | None = None
    # Named tokens with roles (config/admin.py), JSON: {"<name>": {"token", "role"}};
    # POSTROOM_ADMIN_TOKEN is one more, an operator named "admin".
    admin_tokens: Annotated[dict[str, AdminToken], NoDecode] = {}
    admin_local_only: bool = False
    # The audit trail (workers/store/audit_log.py): records older than this many seconds, and
    # all but the newest `audit_max_records`, are trimmed at each write.
    audit_retention: float = Field(default=90 * 86_400.0, gt=0)
    audit_max_records: int = Field(default=100_000, ge=1)
    # Who a CLI command's audit record names (`--operator` overrides it).
    operator: str = Field(default_factory=_os_user, min_length=1, max_length=200)
    log_format: Literal["plain", "json"] = "plain"
    # Each worker process serves Prometheus metrics on this port when set (0: any free port);
    # with `--processes K`, process i uses port + i.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # OpenTelemetry tracing of enqueues, runs and the tasks' calls (needs the `otel` extra;
    # workers/observe/tracing.py). Off, nothing of OpenTelemetry is imported.
    tracing: bool = False
    # Where spans go when the process has no tracer provider of its own: OTLP over HTTP
    # (OTEL_EXPORTER_OTLP_ENDPOINT), the console, or nowhere (ids in the logs only).
    tracing_exporter: Literal["otlp", "console", "none"] = "otlp"

    @field_validator("worker_queues", "task_modules", "redis_cluster", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("rate_limits")
    @classmethod
    def _limit_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9_]+", name):
                raise ValueError(f"limit name {name!r}: use lower-case letters, digits and _")
        return value

    @field_validator("redis_cluster")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"each node must be host:port, not {address!r}")
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> Any:
        listed = _comma_list(value)
        return [_address(item) for item in listed] if isinstance(listed, list) else listed

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_alone(cls, value: list[tuple[str, int]], info: ValidationInfo) -> Any:
        """One deployment at a time: a REDIS_URL beside sentinels would leave one ignored."""
        others = (
            ("REDIS_URL", "redis_url"),
            ("REDIS_HOST", "redis_host"),
            ("POSTROOM_REDIS_CLUSTER", "redis_cluster"),
        )
        for name, field in others:
            if value and info.data.get(field):
                raise ValueError(f"cannot be combined with {name}: set one of the two")
        return value

    @field_validator("enqueue_wait_replicas")
    @classmethod
    def _wait_needs_one_primary(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("redis_cluster"):
            raise ValueError("is for one server or Sentinel, not POSTROOM_REDIS_CLUSTER")
        return value

    @field_validator("redis_ca_file", "redis_key_file")
    @classmethod
    def _tls_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and not _tls_on(info):
            raise ValueError("needs TLS: set POSTROOM_REDIS_TLS=true or a rediss:// REDIS_URL")
        if value is not None and info.field_name == "redis_ca_file":
            tls_files.load_ca(value)
        return value

    @field_validator("redis_cert_file")
    @classmethod
    def _cert_loads(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        """The pair must load now, not at the first connection; a key needs its certificate."""
        key = info.data.get("redis_key_file")
        if value is None:
            if key is not None:
                raise ValueError("is needed with POSTROOM_REDIS_KEY_FILE (the key's certificate)")
            return value
        if not _tls_on(info):
            raise ValueError("needs TLS: set POSTROOM_REDIS_TLS=true or a rediss:// REDIS_URL")
        tls_files.load_pair(value, key)
        return value

    @field_validator("admin_token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < ADMIN_TOKEN_MIN_LENGTH:
            raise ValueError(f"must be at least {ADMIN_TOKEN_MIN_LENGTH} characters")
        return value

    @field_validator("rabbitmq_url")
    @classmethod
    def _amqp_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must start with amqp:// or amqps://")
        return value

    @field_validator("event_transport")
    @classmethod
    def _one_event_bus(cls, value: str | None, info: ValidationInfo) -> str | None:
        """USE_QUEUE_EVENT_BUS=true beside another transport would leave one of them ignored."""
        if value not in (None, "queued") and info.data.get("use_queue_event_bus"):
            raise ValueError(f"is {value!r} but USE_QUEUE_EVENT_BUS is true: set one of the two")
        return value

    @property
    def event_bus_transport(self) -> Literal["memory", "queued", "rabbitmq"]:
        """The bus in use: POSTROOM_EVENT_TRANSPORT, else USE_QUEUE_EVENT_BUS's choice."""
        if self.event_transport is not None:
            return self.event_transport
        return "queued" if self.use_queue_event_bus else "memory"

    @property
    def error_details(self) -> bool:
        """Whether exceptions' own text may be logged (`log_error_details`): unset, when
        payloads are not sealed, as sealing.PayloadSealer.of_settings decides."""
        if self.log_error_details is not None:
            return self.log_error_details
        configured = bool(self.encryption.keys) or self.encryption.key_file is not None
        return not (configured if self.payload_encryption is None else self.payload_encryption)

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _named_tokens(cls, value: Any, info: ValidationInfo) -> dict[str, AdminToken]:
        tokens = parse_admin_tokens(value)
        single = info.data.get("admin_token")
        if single is not None and LEGACY_TOKEN_NAME in tokens:
            raise ValueError(
                f"names a token {LEGACY_TOKEN_NAME!r}, the name POSTROOM_ADMIN_TOKEN goes by: "
                "rename it, or move POSTROOM_ADMIN_TOKEN into POSTROOM_ADMIN_TOKENS"
            )
        if single is not None and any(
            t.token.get_secret_value() == single.get_secret_value() for t in tokens.values()
        ):
            raise ValueError("holds the same secret as POSTROOM_ADMIN_TOKEN")
        return tokens

    @field_validator("redis_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    def redis_dsn(self) -> str | None:
        """The Redis to use, or None when the embedded server should be started."""
        if self.redis_url:
            return self.redis_url
        if not self.redis_host:
            return None
        auth = ""
        if self.redis_username or self.redis_password:
            password = self.redis_password.get_secret_value() if self.redis_password else ""
            auth = f"{quote(self.redis_username or '', safe='')}:{quote(password, safe='')}@"
        return f"redis://{auth}{self.redis_host}:{self.redis_port}/{self.redis_db}"


def env_var_for(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error location came from."""
    head = str(loc[0])
    if head.isupper():  # an alias such as REDIS_PORT
        return head
    # List indexes (worker_queues.0) are not part of the variable's name.
    return ENV_PREFIX + "__".join(str(part) for part in loc if isinstance(part, str)).upper()


def _shown(error: Any) -> str:
    """The bad value, unless it is a credential: an error message must not print one (nor a
    URL's password)."""
    secret = re.search(r"TOKEN|PASSWORD|SECRET|API_KEY|_KEY\b|KEYS", env_var_for(error["loc"]))
    if secret:
        return "***"
    value = error.get("input")
    return repr(redact_credentials(value) if isinstance(value, str) else value)


def load_settings(**overrides: Any) -> PostroomSettings:
    """Read the settings, turning pydantic's error into one that names each bad variable."""
    try:
        return PostroomSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{env_var_for(err['loc'])}: {err['msg']} (got {_shown(err)})" for err in exc.errors()
        )
        # Not chained: pydantic's own text repeats each bad input, credentials included.
        raise ConfigError(f"invalid postroom settings: {problems}") from None
