"""What the admin app's requests share: the client (given, or opened on first use), the
tokens, the audit log and the queues expected to have workers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request

from config.queues import QueueName
from config.settings import PostroomSettings
from workers.client import PostroomClient
from workers.registry import TaskRegistry
from workers.store.audit_log import AuditLog, audit_log

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a token's name and role (the token itself is never kept)."""

    name: str
    role: str

    @property
    def may_change(self) -> bool:
        return self.role == "operator"


@dataclass(frozen=True)
class KnownToken:
    principal: Principal
    digest: bytes  # the token's SHA-256 (auth.token_digest)


# Who a request is when the app is served local-only without any token.
LOCAL = Principal("local", "operator")


class AdminState:
    """The admin app's client: the host's when it passes one (the host closes it), else one
    this app opens on the first request and closes in `close()`.

    A mounted sub-app's lifespan never runs (Starlette runs only the outer app's), so the
    client cannot be opened at startup; opening it on first use works in both cases.
    """

    def __init__(
        self,
        settings: PostroomSettings,
        tasks: TaskRegistry,
        *,
        client: PostroomClient | None,
        tokens: Sequence[KnownToken],
        expected_queues: Sequence[QueueName],
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        # Every token a request may present; none: any request passes (local-only).
        self.tokens = list(tokens)
        self.expected_queues = list(expected_queues)
        self._client = client
        self._owned: PostroomClient | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> PostroomClient:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._owned is None:
                # No retries: a request waits at most one connect timeout for a Redis that
                # is down, and the next request tries again.
                self._owned = await PostroomClient.connect(self.settings, self.tasks, retries=0)
            return self._owned

    async def audit(self) -> AuditLog:
        """The deployment's audit log, on the app's client."""
        return audit_log((await self.client()).redis, self.settings)

    async def close(self) -> None:
        """Close the client this app opened (never one the host passed in)."""
        owned, self._owned = self._owned, None
        if owned is not None:
            await owned.close()


def admin_state(request: Request) -> AdminState:
    state: AdminState = request.app.state.admin
    return state


async def admin_client(request: Request) -> PostroomClient:
    """Dependency: the client of the admin app serving this request."""
    return await admin_state(request).client()
