"""The admin API's named tokens (`POSTROOM_ADMIN_TOKENS`), each with a role.

Several people or systems get a token each, so the audit trail can say who did what (it
records the token's name, never the token). `read-only` may look at everything; `operator`
may also change things (retry, remove, purge, clean, pause, resume, cancel, enqueue).
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

import orjson
from pydantic import BaseModel, ConfigDict, SecretStr

Role = Literal["read-only", "operator"]
ROLES: tuple[str, ...] = get_args(Role)
# A shorter bearer token could be guessed; `secrets.token_urlsafe(32)` makes a good one.
ADMIN_TOKEN_MIN_LENGTH = 16
# The name `POSTROOM_ADMIN_TOKEN` (the single token of earlier versions) goes by.
LEGACY_TOKEN_NAME = "admin"
TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class AdminToken(BaseModel):
    """One named token: its secret and what it may do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr
    role: Role


def parse_admin_tokens(value: Any) -> dict[str, AdminToken]:
    """`{"name": {"token": "...", "role": "read-only" | "operator"}}` (JSON text or a dict).

    Raises ValueError with a message naming the token (never its secret) and what is wrong.
    """
    if isinstance(value, str | bytes):
        if not value.strip():
            return {}
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ValueError(
                'is not JSON; expected {"<name>": {"token": "<secret>", "role": "operator"}}'
            ) from None
    if not isinstance(value, dict):
        raise ValueError('must be a JSON object: {"<name>": {"token": ..., "role": ...}}')
    tokens: dict[str, AdminToken] = {}
    secrets: dict[str, str] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not TOKEN_NAME.fullmatch(name):
            raise ValueError(f"token name {name!r} must be 1-64 letters, digits or _.@-")
        if isinstance(spec, AdminToken):
            spec = {"token": spec.token.get_secret_value(), "role": spec.role}
        if not isinstance(spec, dict) or set(spec) - {"token", "role"} or "token" not in spec:
            raise ValueError(f"token {name!r} must be an object with 'token' and 'role'")
        role = spec.get("role")
        if role not in ROLES:
            raise ValueError(f"token {name!r} has unknown role {role!r}; roles: {', '.join(ROLES)}")
        secret = spec["token"]
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        if not isinstance(secret, str) or len(secret) < ADMIN_TOKEN_MIN_LENGTH:
            raise ValueError(
                f"token {name!r} must be a string of at least {ADMIN_TOKEN_MIN_LENGTH} characters"
            )
        if secret in secrets:
            raise ValueError(f"tokens {secrets[secret]!r} and {name!r} are the same secret")
        secrets[secret] = name
        tokens[name] = AdminToken(token=SecretStr(secret), role=role)
    return tokens
