"""`alembic upgrade head` from code, so a worker can bring its schema up to date at start-up.

The Alembic configuration is built here (no alembic.ini) with the migrations folder's absolute
path, so it works from any directory. Several workers may start at once: the upgrade runs in
one transaction that first takes a lock (an advisory lock on PostgreSQL, SQLite's write lock),
so the others wait and then find the schema at head.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.schema import SchemaItem

from tasks.store.engine import create_engine

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
# pg_advisory_xact_lock key: "postroom" in ASCII, so it is recognisable in pg_locks.
MIGRATION_LOCK = 0x706F7374726F6F6D
# Backend-specific search objects the models do not describe; autogenerate must leave them be.
SEARCH_OBJECTS = frozenset(
    {"message_search_fts", "search_vector", "ix_message_search_search_vector"}
)

Action = Callable[[Config, str], None]


def include_object(
    item: SchemaItem | None, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's autogenerate filter: skip the full-text objects (and FTS5's shadow tables)."""
    if name is None:
        return True
    return name not in SEARCH_OBJECTS and not name.startswith("message_search_fts_")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config for the store; `url` is only needed when no connection is handed over."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # `command.revision` output is made to pass the project's ruff checks as written.
    config.set_section_option("post_write_hooks", "hooks", "lint, format")
    for hook, options in (("lint", "check --fix"), ("format", "format")):
        config.set_section_option("post_write_hooks", f"{hook}.type", "module")
        config.set_section_option("post_write_hooks", f"{hook}.module", "ruff")
        config.set_section_option(
            "post_write_hooks", f"{hook}.options", f"{options} REVISION_SCRIPT_FILENAME"
        )
    if url is not None:
        # The config is an INI parser: a literal % (URL-encoded password) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision`; a no-op when it is already there."""
    await _run(url, command.upgrade, revision)


async def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at `url` to `revision` (by default, drop everything)."""
    await _run(url, command.downgrade, revision)


async def _run(url: str, action: Action, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_locked, action, revision)
    finally:
        await engine.dispose()


def _locked(connection: Connection, action: Action, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held until this transaction ends; SQLite's BEGIN IMMEDIATE already serialises.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    config = alembic_config()
    config.attributes["connection"] = connection
    action(config, revision)
