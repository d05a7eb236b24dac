"""Job payloads sealed at rest: AES-256-GCM over what a job carries, before it reaches Redis.

A job's arguments, its result, its progress and its try errors hold message bodies,
addresses, phone numbers and device tokens; sealed, Redis (and its AOF/RDB files) holds only
ciphertext. A sealed JSON value is stored as `{"$sealed": "v1:<key id>:<nonce>:<ciphertext>"}`
(an object, so a job record's kwargs stay an object); a sealed string field (a try error's
message and traceback) as `"$sealed:v1:..."`. What routes and schedules a job stays plaintext:
task name, queue, ids, times, tries, priority, a dead letter's reason.

Each seal's associated data is the job id, the queue and the field (`kwargs`, `result`,
`progress`, `error`), so a sealed value copied to another job, queue or field does not open:
the worker dead-letters such a job with reason `unsealable`. The keyring is the one the
message encryption uses (`POSTROOM_ENCRYPTION__*`); the key never goes to Redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from config.errors import ConfigError
from config.queues import QueueName
from config.settings import PostroomSettings
from workers.errors import PermanentError
from workers.keyring.errors import EncryptionError
from workers.store.serialization import dumps, loads

if TYPE_CHECKING:  # the keyring (and `cryptography` with it) loads only where keys are set
    from workers.keyring.keyring import Keyring

SEALED = "$sealed"
TEXT_MARK = "$sealed:"
SETTING = "POSTROOM_PAYLOAD_ENCRYPTION"
# What a seal is bound to within its job.
SealedField = Literal["kwargs", "result", "progress", "error"]


class SealError(PermanentError):
    """A sealed value that does not open: tampered, copied from another job, queue or field,
    or sealed under a key this process does not hold. The message names the job and the
    field, never the data."""


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SEALED), str)


def is_sealed_text(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(TEXT_MARK)


def sealed_key_id(value: Any) -> str | None:
    """The key id a sealed value (object or text) names, None for a plain value."""
    text = value[SEALED] if is_sealed(value) else value if is_sealed_text(value) else None
    if text is None:
        return None
    parts = text.removeprefix(TEXT_MARK).split(":")
    return parts[1] if len(parts) == 4 else ""


def associated_data(job_id: str, queue: QueueName, field: SealedField) -> bytes:
    """What a seal is bound to: `postroom-job/v1 NUL <queue> NUL <job id> NUL <field>`."""
    return _QUEUE_AAD[queue] + job_id.encode() + _FIELD_AAD[field]


_QUEUE_AAD = {queue: f"postroom-job/v1\x00{queue.value}\x00".encode() for queue in QueueName}
_FIELD_AAD: dict[str, bytes] = {
    field: f"\x00{field}".encode() for field in ("kwargs", "result", "progress", "error")
}
BOUND_TO = "job, queue or field"


class PayloadSealer:
    """Seals what a job carries (when `seals`) and opens what was sealed (when it holds the
    key). Without a keyring it seals nothing and opening a sealed value raises SealError."""

    def __init__(self, keyring: Keyring | None, *, seals: bool) -> None:
        if seals and keyring is None:
            raise ValueError("sealing needs a keyring")
        self.keyring = keyring
        self.seals = seals

    @classmethod
    def of_settings(cls, settings: PostroomSettings) -> PayloadSealer:
        """The process's sealer; ConfigError naming the variable for a bad key or setting.

        Keys count as configured when `POSTROOM_ENCRYPTION__KEYS` or `__KEY_FILE` is set: a
        key generated into the data dir is one machine's, which a web app on another host
        could not share, so it seals nothing unless `POSTROOM_PAYLOAD_ENCRYPTION` says so.
        """
        encryption = settings.encryption
        configured = bool(encryption.keys) or encryption.key_file is not None
        seals = configured if settings.payload_encryption is None else settings.payload_encryption
        if seals and not configured:
            raise ConfigError(
                f"{SETTING}=true needs keys every process shares: set "
                "POSTROOM_ENCRYPTION__KEYS (or POSTROOM_ENCRYPTION__KEY_FILE); a generated key "
                "is one machine's"
            )
        if not configured:
            return cls(None, seals=False)
        from workers.keyring.loading import load_keyring

        try:
            keyring = load_keyring(encryption, settings.data_dir)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (the keyring {SETTING} seals job payloads with)") from None
        return cls(keyring, seals=seals)

    @property
    def active_key_id(self) -> str | None:
        return None if self.keyring is None else self.keyring.active_key_id

    def seal(self, value: Any, job_id: str, queue: QueueName, field: SealedField) -> Any:
        """`value` sealed as `{"$sealed": ...}` (as is when this sealer does not seal, and
        `None`, which tells nothing: most tasks return it)."""
        if not self.seals or value is None:
            return value
        assert self.keyring is not None
        return {SEALED: self.keyring.seal_text(dumps(value), associated_data(job_id, queue, field))}

    def seal_text(self, text: str, job_id: str, queue: QueueName, field: SealedField) -> str:
        if not self.seals:
            return text
        assert self.keyring is not None
        return TEXT_MARK + self.keyring.seal_text(
            text.encode(), associated_data(job_id, queue, field)
        )

    def open(self, value: Any, job_id: str, queue: QueueName, field: SealedField) -> Any:
        """A sealed value's plaintext (a plain value as is); SealError if it does not open."""
        # is_sealed(value), inline: every job's arguments pass here.
        if not isinstance(value, dict) or len(value) != 1:
            return value
        text = value.get(SEALED)
        if not isinstance(text, str):
            return value
        if self.keyring is not None:
            aad = _QUEUE_AAD[queue] + job_id.encode() + _FIELD_AAD[field]  # associated_data
            opened = self.keyring.open_quick(text, aad)
            if opened is not None:
                return loads(opened)
        return loads(self._open(text, job_id, queue, field))

    def open_text(self, text: str, job_id: str, queue: QueueName, field: SealedField) -> str:
        if not is_sealed_text(text):
            return text
        return self._open(text.removeprefix(TEXT_MARK), job_id, queue, field).decode()

    def shown(self, value: Any, job_id: str, queue: QueueName, field: SealedField) -> Any:
        """For the reading tools: the opened value, or a note saying why it stays sealed."""
        try:
            if is_sealed_text(value):
                return self.open_text(value, job_id, queue, field)
            return self.open(value, job_id, queue, field)
        except SealError as exc:
            return f"<sealed: {exc}>"

    def reseal(
        self, value: Any, job_id: str, queue: QueueName, field: SealedField, *, text: bool = False
    ) -> Any:
        """`value` (a sealed string field with `text`) sealed under the active key, plain
        values too when sealing is on; the same object when there is nothing to do.
        SealError if it does not open. (With sealing off, a value sealed under an old key
        is still sealed again under the active one: the old key is about to go.)"""
        key_id = sealed_key_id(value)
        if key_id == self.active_key_id or (key_id is None and not self.seals):
            return value
        sealing = self if self.seals else PayloadSealer(self.keyring, seals=True)
        if text:
            return sealing.seal_text(
                self.open_text(value, job_id, queue, field), job_id, queue, field
            )
        return sealing.seal(self.open(value, job_id, queue, field), job_id, queue, field)

    def _open(self, text: str, job_id: str, queue: QueueName, field: SealedField) -> bytes:
        def what() -> str:
            return f"the sealed {field} of job {job_id!r} in {queue.value}"

        if self.keyring is None:
            raise SealError(
                f"cannot open {what()}: no key is configured (POSTROOM_ENCRYPTION__KEYS)"
            )
        try:
            aad = associated_data(job_id, queue, field)
            return self.keyring.open_text(text, aad, what, bound_to=BOUND_TO)
        except EncryptionError as exc:
            message = str(exc)
            raise SealError(message if "cannot" in message else f"{what()}: {message}") from None


# Reading tools with no keys: plain values as they are, sealed ones noted as sealed.
NO_SEALER = PayloadSealer(None, seals=False)
