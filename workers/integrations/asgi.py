"""FastAPI/Starlette: a lifespan that opens one client per app, and dependencies to reach it.

```python
app = FastAPI(lifespan=postroom_lifespan)

@app.post("/messages")
async def post(message: SendMessage, client: PostroomClientDep) -> dict[str, str]:
    job = await client.enqueue(send_message.call(message))
    return {"jobId": job.job_id}
```

The lifespan puts the client (and an event bus) in the lifespan state, which the server
copies into every request and WebSocket, mounted sub-apps included, and on `app.state`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

try:
    from fastapi import Depends
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "workers.integrations.asgi needs FastAPI: pip install 'postroom[web]'"
    ) from exc

from config.settings import PostroomSettings, load_settings
from workers.client import PostroomClient
from workers.events import EventBus, EventHandlers, event_bus, handlers
from workers.integrations.client import open_client
from workers.observe.trace_gate import tracing_for
from workers.registry import TaskRegistry, registry

CLIENT_STATE = "postroom"
EVENT_BUS_STATE = "postroom_events"

# An app's own lifespan, run inside postroom's (so its startup can use the client).
Lifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


class PostroomLifespan:
    """`FastAPI(lifespan=PostroomLifespan(settings, then=my_lifespan))`.

    On startup: read the settings (unless given), connect one client, build the event bus
    `USE_QUEUE_EVENT_BUS` picks, then run `then`. On shutdown, the reverse.
    """

    def __init__(
        self,
        settings: PostroomSettings | None = None,
        *,
        tasks: TaskRegistry = registry,
        event_handlers: EventHandlers = handlers,
        embedded_redis: bool = False,
        then: Lifespan | None = None,
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        self.event_handlers = event_handlers
        self.embedded_redis = embedded_redis
        self.then = then

    @asynccontextmanager
    async def __call__(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        settings = self.settings or load_settings()
        async with open_client(
            settings, tasks=self.tasks, embedded_redis=self.embedded_redis
        ) as client:
            bus = event_bus(settings, client, self.event_handlers)
            state: dict[str, Any] = {CLIENT_STATE: client, EVENT_BUS_STATE: bus}
            for name, value in state.items():
                setattr(app.state, name, value)
            try:
                if self.then is None:
                    yield state
                else:
                    async with self.then(app) as extra:
                        yield {**state, **(extra or {})}
            finally:
                # A closed client must not linger where a later request could find it.
                for name in state:
                    delattr(app.state, name)
                close = getattr(bus, "close", None)  # the RabbitMQ bus's connection
                if close is not None:
                    await close()


def trace_requests(app: Any, settings: PostroomSettings | None = None) -> None:
    """With `POSTROOM_TRACING`, a server span per request of this FastAPI (or Starlette)
    app, under which its enqueues' spans nest; nothing otherwise. Call it before serving."""
    tracing = tracing_for(settings or load_settings())
    if tracing is not None:
        tracing.instrument_app(app)


def postroom_lifespan(app: Any) -> AbstractAsyncContextManager[dict[str, Any]]:
    """`FastAPI(lifespan=postroom_lifespan)`: the environment's settings, read at startup."""
    return PostroomLifespan()(app)


def _from_state(connection: HTTPConnection, name: str) -> Any:
    for state in (connection.state, connection.app.state):
        value = getattr(state, name, None)
        if value is not None:
            return value
    raise RuntimeError(
        f"no {name!r} in the app's state: create the app with "
        "lifespan=postroom_lifespan (or PostroomLifespan(...)); a mounted app gets its parent's"
    )


def get_client(connection: HTTPConnection) -> PostroomClient:
    """The app's client, for `Depends` in HTTP and WebSocket routes alike."""
    client: PostroomClient = _from_state(connection, CLIENT_STATE)
    return client


def get_event_bus(connection: HTTPConnection) -> EventBus:
    bus: EventBus = _from_state(connection, EVENT_BUS_STATE)
    return bus


PostroomClientDep = Annotated[PostroomClient, Depends(get_client)]
EventBusDep = Annotated[EventBus, Depends(get_event_bus)]

__all__ = [
    "EventBusDep",
    "Lifespan",
    "PostroomClientDep",
    "PostroomLifespan",
    "get_client",
    "get_event_bus",
    "postroom_lifespan",
    "trace_requests",
]
