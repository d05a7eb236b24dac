"""Whether this process traces: the one cheap check the enqueue and run paths make.

Tracing is on when the settings say so (`POSTROOM_TRACING=true`); only then is
`workers.observe.tracing`, the one module that imports OpenTelemetry, loaded, and a missing
`otel` extra is a ConfigError naming the variable. Off, callers get None and skip their hook
with one `is None` test, and `opentelemetry` is never imported (tests/test_tracing.py).

The tracing is per process (OpenTelemetry's tracer provider is a global): the first caller
that turns it on sets it up; the worker side also instruments httpx and SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from config.errors import ConfigError
from config.settings import PostroomSettings

if TYPE_CHECKING:
    from workers.observe.tracing import Tracing

# Set once tracing is on in this process.
_active: Tracing | None = None


def tracing_for(settings: PostroomSettings, *, worker: bool = False) -> Tracing | None:
    """This process's tracing when `settings.tracing` is on (set up on first use), else None.

    `worker` also instruments the libraries the tasks call through (httpx, SQLAlchemy)."""
    global _active
    if not settings.tracing:
        return None
    try:
        from workers.observe import tracing
    except ImportError as exc:
        raise ConfigError(
            f"POSTROOM_TRACING is true but OpenTelemetry cannot be imported ({exc}): "
            "pip install 'postroom[otel]', or unset POSTROOM_TRACING"
        ) from None
    if _active is None:
        _active = tracing.Tracing.start(settings)
    if worker:
        _active.instrument_libraries()
    return _active


def active_tracing() -> Tracing | None:
    """The tracing some caller turned on in this process, if any."""
    return _active


def stop_tracing() -> None:
    """Undo `tracing_for` (the libraries' instrumentation too); for tests."""
    global _active
    if _active is not None:
        _active.uninstrument_libraries()
        _active = None


@contextmanager
def client_span(name: str, attributes: Mapping[str, str | int] | None = None) -> Iterator[None]:
    """A client span around a call no instrumentation covers (an SMTP session), under the
    running job's span; nothing at all when tracing is off.

    ```python
    with client_span("smtp send", {"server.address": host, "server.port": port}):
        await smtp.send_message(message)
    ```
    """
    if _active is None:
        yield
        return
    with _active.client_span(name, attributes or {}):
        yield
