"""The message store's tables as typed declarative models, shared by SQLite and PostgreSQL.

The full-text machinery differs per backend (an FTS5 table on SQLite, a `tsvector` column on
PostgreSQL); it lives in the migration and in `search.py`, so these models stay portable.
No relationships: lazy loads do not work under asyncio, and the repositories query by key.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tasks.store.timestamps import UTCDateTime, utcnow

# Identifiers come from the platform (the seed's `messageId`, user ids): opaque strings.
ID_LENGTH = 255

# Deterministic constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class DeliveryStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class Channel(StrEnum):
    PUSH = "push"
    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    READ = "read"


def _enum(kind: type[StrEnum], name: str) -> Enum:
    """A VARCHAR with a CHECK constraint: adding a value later needs no native-type dance."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        str: String(ID_LENGTH),
        dict[str, Any]: JSON().with_variant(JSONB(), "postgresql"),
    }


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set when a conversation is deleted; `cleanup` purges it and its messages later.
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index(None, "conversation_id", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    sender_id: Mapped[str]
    # The ciphertext when `encrypted` (with the key that sealed it in `key_id`).
    content: Mapped[str] = mapped_column(Text)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    key_id: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    deleted_at: Mapped[datetime | None]


class Delivery(Base):
    """One recipient's copy of a message; the primary key makes a retried send one row."""

    __tablename__ = "deliveries"

    message_id: Mapped[str] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    recipient_id: Mapped[str] = mapped_column(primary_key=True, index=True)
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "delivery_status"))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index(None, "recipient_id", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    recipient_id: Mapped[str]
    channel: Mapped[Channel] = mapped_column(_enum(Channel, "notification_channel"))
    # Kept when the message is purged: the notification is the recipient's own record.
    message_id: Mapped[str | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[NotificationStatus] = mapped_column(
        _enum(NotificationStatus, "notification_status")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    read_at: Mapped[datetime | None]


class Attachment(Base):
    """A file on disk owned by a message; `cleanup` removes the row and the file together."""

    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(primary_key=True)
    # No cascade: a message's rows may only go with its files, which only `cleanup` removes.
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id"), index=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(index=True)


class SearchEntry(Base):
    """The searchable text of one message; the backend's full-text index is built from it.

    The integer key is what SQLite's FTS5 table points at (a rowid that VACUUM cannot
    renumber); there is no foreign key, as indexing may run before the message is saved.
    """

    __tablename__ = "message_search"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    message_id: Mapped[str] = mapped_column(unique=True)
    conversation_id: Mapped[str] = mapped_column(index=True)
    sender_id: Mapped[str] = mapped_column(index=True)
    body: Mapped[str] = mapped_column(Text)
