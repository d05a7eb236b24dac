"""INSERT ... ON CONFLICT for the session's backend: what makes retried tasks idempotent.

SQLite and PostgreSQL share the syntax, but SQLAlchemy builds it from each dialect's own
`insert`; a task retried after a crash then finds its row and changes nothing.
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tasks.store.models import Base


def upsert(session: AsyncSession, model: type[Base]) -> sqlite.Insert | postgresql.Insert:
    """An INSERT into `model`'s table that accepts `on_conflict_do_nothing/update`."""
    backend = session.get_bind().dialect.name
    if backend == "postgresql":
        return postgresql.insert(model)
    if backend == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"the message store runs on SQLite or PostgreSQL, not {backend}")
