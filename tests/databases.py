"""Real databases for the store's and the tasks' tests: SQLite per test, PostgreSQL per session.

PostgreSQL must run on 127.0.0.1:5432 with trust authentication (user `postgres` or `root`).
It is not optional: when it cannot be reached, its tests fail saying so, rather than skip and
leave the production backend untested. The session's database gets a unique name, is migrated
once, emptied before each test and dropped at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from tasks.store import MessageStore, create_engine, migrate
from tasks.store.models import Base

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_USERS = ("postgres", "root")
BACKENDS = ("sqlite", "postgresql")


async def _admin() -> tuple[Any, str]:
    """A connection to the `postgres` database, and the user it was made as."""
    problems = []
    for user in POSTGRES_USERS:
        try:
            connection = await asyncpg.connect(
                host=POSTGRES_HOST, port=POSTGRES_PORT, user=user, database="postgres", timeout=5
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            problems.append(f"as {user}: {type(exc).__name__}: {exc}")
        else:
            return connection, user
    pytest.fail(
        f"PostgreSQL is needed on {POSTGRES_HOST}:{POSTGRES_PORT} (trust auth, user "
        f"{' or '.join(POSTGRES_USERS)}) for the store's PostgreSQL tests: " + "; ".join(problems),
        pytrace=False,
    )


async def create_database() -> str:
    """A new, empty PostgreSQL database with a unique name; returns its SQLAlchemy URL."""
    name = f"postroom_test_{uuid.uuid4().hex[:12]}"
    connection, user = await _admin()
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return f"postgresql+asyncpg://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"


async def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    connection, _ = await _admin()
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's migrated PostgreSQL database (set up outside the tests' event loops)."""
    url = asyncio.run(create_database())
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(drop_database(url))


async def _empty(url: str) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each backend's database: a new SQLite file, or the session's PostgreSQL database.

    Synchronous, so that the session fixture it may start runs outside any event loop.
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'messages.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store_url(backend_url: str) -> str:
    """A migrated, empty database of each backend."""
    if backend_url.startswith("sqlite"):
        await migrate(backend_url)
    else:
        await _empty(backend_url)
    return backend_url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[MessageStore]:
    async with MessageStore(create_engine(store_url)) as opened:
        yield opened


@pytest.fixture(params=BACKENDS)
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of each backend with no tables at all, for the migrations' own tests."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty' / 'messages.db'}"
        return
    url = await create_database()
    try:
        yield url
    finally:
        await drop_database(url)
