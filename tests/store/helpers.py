"""Small queries the store's tests use to look at what is really in the database."""

from __future__ import annotations

from sqlalchemy import func, select

from tasks.store import MessageStore
from tasks.store.models import Base


async def count_rows(store: MessageStore, model: type[Base]) -> int:
    async with store.transaction() as session:
        return (await session.scalar(select(func.count()).select_from(model))) or 0
