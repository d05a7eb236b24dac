"""The message store the task functions share: its engine, sessions and transactions.

How to reach the database (URLs, the SQLite set-up) is engine.py's; opening the store first
brings its schema up to date (migrate.py).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tasks.store.engine import create_engine, database_url
from tasks.store.migrate import migrate as run_migrations


class MessageStore:
    """The engine and session factory the task functions share; one per worker process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Rows stay readable after commit: async sessions cannot lazily reload them.
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(
        cls, url: str | None = None, *, data_dir: Path = Path(".postroom"), migrate: bool = True
    ) -> MessageStore:
        """Connect to `url` (or the SQLite default), first bringing its schema up to date."""
        resolved = database_url(url, data_dir)
        if migrate:
            await run_migrations(resolved)
        return cls(create_engine(resolved))

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session in one transaction: committed when the block ends, rolled back on error."""
        return self.sessions.begin()

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
