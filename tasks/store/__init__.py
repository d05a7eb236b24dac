"""The message store: messages, deliveries, notifications, attachments and their search index.

SQLAlchemy's async ORM over SQLite (the embedded default, a file in the data directory) or
PostgreSQL (`DATABASE_URL`), with Alembic migrations. Open one `MessageStore` per process;
the repository functions take a session from `store.transaction()`, so a task groups its writes
in one transaction, and are idempotent, so a retried task changes nothing twice.
"""

from tasks.store.cleanup import CLEANUP_KINDS, CleanupCounts, CleanupKind, cleanup
from tasks.store.database import MessageStore
from tasks.store.deliveries import (
    get_delivery,
    mark_delivered,
    mark_failed,
    mark_read,
    record_sent,
)
from tasks.store.engine import create_engine, database_url, normalise_url
from tasks.store.messages import (
    add_attachment,
    delete_conversation,
    encrypted_under_other_keys,
    ensure_conversation,
    get_message,
    save_message,
    store_sealed,
)
from tasks.store.migrate import downgrade, migrate
from tasks.store.models import (
    Attachment,
    Channel,
    Conversation,
    Delivery,
    DeliveryStatus,
    Message,
    Notification,
    NotificationStatus,
    SearchEntry,
)
from tasks.store.notifications import (
    list_notifications,
    mark_notification_read,
    set_notification_status,
    store_notification,
)
from tasks.store.search import SearchHit, delete_from_index, index_message, search, update_index

__all__ = [
    "CLEANUP_KINDS",
    "Attachment",
    "Channel",
    "CleanupCounts",
    "CleanupKind",
    "Conversation",
    "Delivery",
    "DeliveryStatus",
    "Message",
    "MessageStore",
    "Notification",
    "NotificationStatus",
    "SearchEntry",
    "SearchHit",
    "add_attachment",
    "cleanup",
    "create_engine",
    "database_url",
    "delete_conversation",
    "delete_from_index",
    "downgrade",
    "encrypted_under_other_keys",
    "ensure_conversation",
    "get_delivery",
    "get_message",
    "index_message",
    "list_notifications",
    "mark_delivered",
    "mark_failed",
    "mark_notification_read",
    "mark_read",
    "migrate",
    "normalise_url",
    "record_sent",
    "save_message",
    "search",
    "set_notification_status",
    "store_notification",
    "store_sealed",
    "update_index",
]
