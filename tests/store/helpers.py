"""Small queries the store's tests use to look at what is really in the database."""

from __future__ import annotations

from sqlalchemy import func, select

from tasks.store import MessageStore, search
from tasks.store.models import Base


async def count_rows(store: MessageStore, model: type[Base]) -> int:
    async with store.transaction() as session:
        return (await session.scalar(select(func.count()).select_from(model))) or 0


async def found(
    store: MessageStore,
    query: str,
    *,
    conversation_id: str | None = None,
    sender_id: str | None = None,
) -> list[str]:
    """The ids of the messages `search` finds, best first."""
    async with store.transaction() as session:
        hits = await search(session, query, conversation_id=conversation_id, sender_id=sender_id)
    return [hit.message_id for hit in hits]
