"""postroom's task functions, a module per queue; importing this package registers them.

Workers import the modules named by `POSTROOM_TASK_MODULES` (default: this package). The
adapters they use live beside them: `store` (the message store), `encryption`, `notify`.
"""

from tasks import (
    batch_sending,
    maintenance,
    message_cleanup,
    message_delivery,
    message_encryption,
    message_indexing,
    message_notification,
)

__all__ = [
    "batch_sending",
    "maintenance",
    "message_cleanup",
    "message_delivery",
    "message_encryption",
    "message_indexing",
    "message_notification",
]
