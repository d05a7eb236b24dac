"""Full-text search over messages: FTS5 with bm25 on SQLite, `tsvector` with ts_rank on PostgreSQL.

Entries live in `message_search` (one row per message, upserted, so re-indexing replaces);
each backend indexes its `body` (see the initial migration). The indexing task writes the
searchable text, e.g. the plaintext of an encrypted message, which `messages` never holds.

A query is split into words and matches messages containing any of them, best first: more of
the words, and more often, rank higher. Only the words reach the backend (as quoted FTS5 terms,
or as plain lexemes for to_tsquery), never the user's punctuation, so no input is a syntax
error. Both stem English words ("reports" finds "report"); PostgreSQL also ignores English stop
words ("the"), which FTS5 indexes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    column,
    delete,
    func,
    literal_column,
    select,
    table,
    update,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnClause

from tasks.store.models import SearchEntry
from tasks.store.upsert import upsert

# Both backends split words at anything that is not a letter or a digit (underscores too).
WORD = re.compile(r"[^\W_]+")
FTS_TABLE = "message_search_fts"
TEXT_SEARCH_CONFIG = "english"


class SearchHit(BaseModel):
    """A matching message; `rank` orders hits (higher is better) but differs per backend."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    conversation_id: str
    sender_id: str
    rank: float


async def index_message(
    session: AsyncSession, *, message_id: str, conversation_id: str, sender_id: str, text: str
) -> None:
    """Make the message searchable by `text`, replacing what it was indexed under before."""
    statement = upsert(session, SearchEntry).values(
        message_id=message_id, conversation_id=conversation_id, sender_id=sender_id, body=text
    )
    statement = statement.on_conflict_do_update(
        index_elements=[SearchEntry.message_id],
        set_={
            "conversation_id": statement.excluded.conversation_id,
            "sender_id": statement.excluded.sender_id,
            "body": statement.excluded.body,
        },
    )
    await session.execute(statement)


async def update_index(session: AsyncSession, message_id: str, text: str) -> bool:
    """Replace an indexed message's text (it was edited); False when it is not indexed."""
    statement = (
        update(SearchEntry)
        .where(SearchEntry.message_id == message_id)
        .values(body=text)
        .returning(SearchEntry.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def delete_from_index(session: AsyncSession, message_id: str) -> bool:
    """Stop finding the message; False when it was not indexed."""
    statement = (
        delete(SearchEntry).where(SearchEntry.message_id == message_id).returning(SearchEntry.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


def words(query: str) -> list[str]:
    """The distinct words of `query`, lower-cased, in order."""
    return list(dict.fromkeys(word.lower() for word in WORD.findall(query)))


async def search(
    session: AsyncSession,
    query: str,
    *,
    conversation_id: str | None = None,
    sender_id: str | None = None,
    limit: int = 20,
) -> list[SearchHit]:
    """The best `limit` messages matching any word of `query`, best first.

    `conversation_id` and `sender_id` narrow the search to one conversation or one sender.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    terms = words(query)
    if not terms:
        return []
    sqlite = session.get_bind().dialect.name == "sqlite"
    statement = _fts5(terms) if sqlite else _tsvector(terms)
    if conversation_id is not None:
        statement = statement.where(SearchEntry.conversation_id == conversation_id)
    if sender_id is not None:
        statement = statement.where(SearchEntry.sender_id == sender_id)
    rows = await session.execute(statement.limit(limit))
    return [SearchHit(message_id=m, conversation_id=c, sender_id=s, rank=r) for m, c, s, r in rows]


def _columns(rank: ColumnElement[float]) -> Select[str, str, str, float]:
    return select(SearchEntry.message_id, SearchEntry.conversation_id, SearchEntry.sender_id, rank)


def _fts5(terms: list[str]) -> Select[str, str, str, float]:
    fts = table(FTS_TABLE, column("rowid", Integer()))
    # FTS5's MATCH and bm25() take the table's own name where SQL would expect a column.
    table_itself: ColumnClause[Any] = literal_column(FTS_TABLE)
    # Quoted strings are FTS5 terms whatever they contain; bm25 is lower for better matches.
    match = " OR ".join(f'"{term}"' for term in terms)
    bm25 = func.bm25(table_itself, type_=Float())
    return (
        _columns(-bm25)
        .select_from(SearchEntry)
        .join(fts, fts.c.rowid == SearchEntry.id)
        .where(table_itself.op("MATCH")(match))
        .order_by(bm25, SearchEntry.message_id)
    )


def _tsvector(terms: list[str]) -> Select[str, str, str, float]:
    vector = literal_column(f"{SearchEntry.__tablename__}.search_vector", TSVECTOR)
    # Letters and digits only, so the words are plain lexemes to to_tsquery; `|` means any.
    tsquery = func.to_tsquery(TEXT_SEARCH_CONFIG, " | ".join(terms))
    rank = func.ts_rank(vector, tsquery, type_=Float())
    return (
        _columns(rank).where(vector.op("@@")(tsquery)).order_by(rank.desc(), SearchEntry.message_id)
    )
