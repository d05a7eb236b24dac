"""Where the message store lives and how to connect to it.

With no `DATABASE_URL` the store is a SQLite file in the data directory, so a bare machine
needs no database server; production passes PostgreSQL's `DATABASE_URL`. Hosting platforms
hand out `postgres://` URLs with libpq's `sslmode`: both are translated for asyncpg here.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

SQLITE_FILE = "messages.db"
# How long a SQLite writer waits for another process's transaction before "database is locked".
SQLITE_BUSY_TIMEOUT = 15.0


def _create_async_engine(url: str, **options: Any) -> AsyncEngine:
    """SQLAlchemy's, looked up at each call: with tracing on, the worker has instrumented it
    (since the engine was imported) and its engines' statements become spans."""
    return sqlalchemy_asyncio.create_async_engine(url, **options)


def normalise_url(url: str) -> str:
    """`url` with the async driver of its backend; only PostgreSQL and SQLite are supported."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        query = dict(parsed.query)
        if "sslmode" in query:  # libpq's name; asyncpg calls it `ssl` (same values)
            query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(drivername="postgresql+asyncpg", query=query)
    elif backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    else:
        raise ValueError(
            f"unsupported database {parsed.drivername!r}: use postgresql:// or sqlite:// "
            f"(got {parsed.render_as_string()})"
        )
    return parsed.render_as_string(hide_password=False)


def database_url(url: str | None, data_dir: Path) -> str:
    """The store's SQLAlchemy URL: `url` normalised, or the SQLite file in `data_dir`."""
    if not url:
        return str(URL.create("sqlite+aiosqlite", database=str(data_dir.resolve() / SQLITE_FILE)))
    return normalise_url(url)


def _sqlite_on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # The driver would only BEGIN before DML, leaving DDL (migrations) and SELECTs outside any
    # transaction; `_sqlite_begin` takes over.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while a writer commits; NORMAL sync is durable enough under WAL.
    _use_wal(cursor)
    for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the file in WAL mode (it stays so), retrying while another connection holds a lock.

    Switching the journal mode needs the file to itself and SQLite may answer "database is
    locked" at once, without waiting out the busy timeout: that happens when workers open a
    new file together (one migrating while another connects). Once the file is in WAL mode
    this only reads the mode, so the sleeps can only happen while a new store is created.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    delay = 0.01
    while True:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)  # in the connect hook, which is synchronous; rare and short
        delay = min(delay * 2, 0.2)


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    # writes fails at once with "database is locked" when another process wrote meanwhile,
    # whereas waiting for the lock respects the busy timeout.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """An async engine for `url`; on SQLite, with WAL, foreign keys and real transactions."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Connections outlive PostgreSQL restarts and failovers in the pool: test them first.
        return _create_async_engine(url, pool_pre_ping=True, **options)
    if parsed.database and not parsed.database.startswith((":memory:", "file:")):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    options.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT)
    engine = _create_async_engine(url, **options)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine
