"""Migrations build the whole schema from nothing, can run again (even at once) and go back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from tasks.store import MessageStore, create_engine, database_url, downgrade, migrate
from tasks.store.migrate import include_object
from tasks.store.models import Base

TABLES = {
    "conversations",
    "messages",
    "deliveries",
    "notifications",
    "attachments",
    "message_search",
}


async def _schema(url: str) -> tuple[set[str], str | None, bool]:
    """The tables, the Alembic revision, and whether the backend's full-text index exists."""

    def read(connection: Connection) -> tuple[set[str], str | None, bool]:
        tables = set(inspect(connection).get_table_names())
        revision = None
        if "alembic_version" in tables:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        if connection.dialect.name == "sqlite":
            search = "message_search_fts" in tables
        else:
            indexes = (
                inspect(connection).get_indexes("message_search")
                if "message_search" in tables
                else []
            )
            search = any(index["name"] == "ix_message_search_search_vector" for index in indexes)
        return tables - {"alembic_version"}, revision, search

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def test_migrate_builds_everything_from_empty_and_reruns_as_a_no_op(empty_url: str) -> None:
    await migrate(empty_url)
    tables, revision, search = await _schema(empty_url)
    assert tables >= TABLES
    assert revision == "0001"
    assert search

    await migrate(empty_url)
    assert await _schema(empty_url) == (tables, "0001", True)


async def test_concurrent_migrations_all_succeed(empty_url: str) -> None:
    """Workers starting together each migrate; the lock makes all but one find it done."""
    await asyncio.gather(*(migrate(empty_url) for _ in range(3)))
    tables, revision, _ = await _schema(empty_url)
    assert tables >= TABLES
    assert revision == "0001"


async def test_downgrade_removes_everything_and_upgrade_rebuilds_it(empty_url: str) -> None:
    await migrate(empty_url)
    await downgrade(empty_url)
    tables, revision, search = await _schema(empty_url)
    assert tables == set()
    assert revision is None
    assert not search

    await migrate(empty_url)
    assert (await _schema(empty_url))[1:] == ("0001", True)


async def test_models_match_the_migrated_schema(store: MessageStore) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection, opts={"include_object": include_object, "compare_type": True}
        )
        return list(compare_metadata(context, Base.metadata))

    async with store.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_open_migrates_the_default_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    async with await MessageStore.open(None, data_dir=data_dir) as store:
        assert store.dialect == "sqlite"
    assert (data_dir / "messages.db").is_file()
    assert (await _schema(database_url(None, data_dir)))[1] == "0001"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p%40ss@db:5432/app", "postgresql+asyncpg://u:p%40ss@db:5432/app"),
        ("postgresql://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgres://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
        ("sqlite:////var/lib/m.db", "sqlite+aiosqlite:////var/lib/m.db"),
    ],
)
def test_database_urls_are_normalised_to_the_async_drivers(given: str, expected: str) -> None:
    assert database_url(given, Path("/unused")) == expected


def test_no_database_url_means_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    assert database_url(None, tmp_path) == f"sqlite+aiosqlite:///{tmp_path}/messages.db"
    assert database_url("", tmp_path) == database_url(None, tmp_path)


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        database_url("mysql://u@db/app", Path("/unused"))
