"""Settings of the notification channels: push gateway, SMS provider, SMTP server.

A channel whose `url`/`host` is unset is "not configured": building it is fine (a worker builds
all three at start), sending through it raises a PermanentError saying so.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, SecretStr, model_validator


class PushSettings(BaseModel):
    """A push gateway taking a JSON POST; `token` is sent as `Authorization: Bearer`."""

    model_config = ConfigDict(frozen=True)

    url: AnyHttpUrl | None = None
    token: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0)


class SmsSettings(BaseModel):
    """An SMS provider taking a form POST.

    With `username`, HTTP basic auth is `username:api_key` (Twilio's account SID and token);
    without, `api_key` is sent as `Authorization: Bearer`.
    """

    model_config = ConfigDict(frozen=True)

    url: AnyHttpUrl | None = None
    api_key: SecretStr | None = None
    username: str | None = None
    # The sender id or number, posted as `from`; the provider's default when unset.
    sender: str | None = None
    timeout: float = Field(default=10.0, gt=0)


class SmtpSettings(BaseModel):
    """An SMTP server: implicit TLS (`use_tls`, port 465) or STARTTLS (default, port 587).

    STARTTLS is required, not opportunistic, unless `starttls` is set to false (a local relay);
    `ca_file` replaces the system's CAs for verifying the server (a private CA).
    """

    model_config = ConfigDict(frozen=True)

    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    use_tls: bool = False
    starttls: bool | None = None  # None: on unless use_tls
    username: str | None = None
    password: SecretStr | None = None
    sender: str | None = None
    ca_file: Path | None = None
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> SmtpSettings:
        if self.use_tls and self.starttls:
            raise ValueError("use_tls (implicit TLS) and starttls exclude each other")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def uses_starttls(self) -> bool:
        return not self.use_tls if self.starttls is None else self.starttls

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 465 if self.use_tls else 587 if self.uses_starttls else 25
