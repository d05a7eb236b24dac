"""The message store: conversations, messages, deliveries, notifications, attachments, search.

The full-text index is the one part that differs per backend: an FTS5 table kept in step with
`message_search` by triggers on SQLite; a generated `tsvector` column with a GIN index on
PostgreSQL. Both stem English words (Porter), so the same queries match on both.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(255)
TIMESTAMP = sa.DateTime(timezone=True)

FTS5_UP = (
    """
    CREATE VIRTUAL TABLE message_search_fts USING fts5(
        body, content='message_search', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER message_search_fts_insert AFTER INSERT ON message_search BEGIN
        INSERT INTO message_search_fts (rowid, body) VALUES (new.id, new.body);
    END
    """,
    """
    CREATE TRIGGER message_search_fts_delete AFTER DELETE ON message_search BEGIN
        INSERT INTO message_search_fts (message_search_fts, rowid, body)
        VALUES ('delete', old.id, old.body);
    END
    """,
    """
    CREATE TRIGGER message_search_fts_update AFTER UPDATE OF body ON message_search BEGIN
        INSERT INTO message_search_fts (message_search_fts, rowid, body)
        VALUES ('delete', old.id, old.body);
        INSERT INTO message_search_fts (rowid, body) VALUES (new.id, new.body);
    END
    """,
)
FTS5_DOWN = (
    "DROP TRIGGER message_search_fts_update",
    "DROP TRIGGER message_search_fts_delete",
    "DROP TRIGGER message_search_fts_insert",
    "DROP TABLE message_search_fts",
)


def _one_of(column: str, values: Sequence[str], name: str) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=op.f(name))


def _backend() -> str:
    # The context's dialect, unlike op.get_bind(), also exists in offline (--sql) mode.
    name = op.get_context().dialect.name
    if name not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"the message store runs on SQLite or PostgreSQL, not {name}")
    return name


def upgrade() -> None:
    backend = _backend()
    op.create_table(
        "conversations",
        sa.Column("id", ID, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(op.f("ix_conversations_deleted_at"), "conversations", ["deleted_at"])
    op.create_table(
        "messages",
        sa.Column("id", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("sender_id", ID, nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.Column("key_id", ID, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("deleted_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index(
        op.f("ix_messages_conversation_id_created_at"),
        "messages",
        ["conversation_id", "created_at"],
    )
    op.create_index(op.f("ix_messages_created_at"), "messages", ["created_at"])
    op.create_table(
        "deliveries",
        sa.Column("message_id", ID, nullable=False),
        sa.Column("recipient_id", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("read_at", TIMESTAMP, nullable=True),
        sa.Column("failed_at", TIMESTAMP, nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        _one_of("status", ("sent", "delivered", "read", "failed"), "ck_deliveries_delivery_status"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_deliveries_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "recipient_id", name=op.f("pk_deliveries")),
    )
    op.create_index(op.f("ix_deliveries_recipient_id"), "deliveries", ["recipient_id"])
    op.create_table(
        "notifications",
        sa.Column("id", ID, nullable=False),
        sa.Column("recipient_id", ID, nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("message_id", ID, nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("read_at", TIMESTAMP, nullable=True),
        _one_of(
            "channel", ("push", "email", "sms", "in_app"), "ck_notifications_notification_channel"
        ),
        _one_of(
            "status", ("pending", "sent", "failed", "read"), "ck_notifications_notification_status"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_notifications_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(
        op.f("ix_notifications_recipient_id_created_at"),
        "notifications",
        ["recipient_id", "created_at"],
    )
    op.create_index(op.f("ix_notifications_message_id"), "notifications", ["message_id"])
    op.create_table(
        "attachments",
        sa.Column("id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_attachments_message_id_messages")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attachments")),
    )
    op.create_index(op.f("ix_attachments_message_id"), "attachments", ["message_id"])
    op.create_index(op.f("ix_attachments_expires_at"), "attachments", ["expires_at"])
    _create_message_search(backend)


def _create_message_search(backend: str) -> None:
    columns: list[sa.schema.SchemaItem] = [
        # INTEGER PRIMARY KEY on SQLite: the rowid itself, which FTS5's content_rowid needs.
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("sender_id", ID, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_search")),
        sa.UniqueConstraint("message_id", name=op.f("uq_message_search_message_id")),
    ]
    if backend == "postgresql":
        columns.append(
            sa.Column(
                "search_vector",
                postgresql.TSVECTOR(),
                sa.Computed("to_tsvector('english', body)", persisted=True),
                nullable=False,
            )
        )
    op.create_table("message_search", *columns)
    op.create_index(
        op.f("ix_message_search_conversation_id"), "message_search", ["conversation_id"]
    )
    op.create_index(op.f("ix_message_search_sender_id"), "message_search", ["sender_id"])
    if backend == "postgresql":
        op.create_index(
            op.f("ix_message_search_search_vector"),
            "message_search",
            ["search_vector"],
            postgresql_using="gin",
        )
    else:
        for statement in FTS5_UP:
            op.execute(statement)


def downgrade() -> None:
    if _backend() == "sqlite":
        for statement in FTS5_DOWN:
            op.execute(statement)
    tables = ("message_search", "attachments", "notifications", "deliveries", "messages")
    for table in (*tables, "conversations"):
        op.drop_table(table)
