"""The client side on a Redis Cluster: `PostroomClient.connect` with `POSTROOM_REDIS_CLUSTER`
set connects to the Cluster (cluster_connection.py); this is its older spelling.
"""

from __future__ import annotations

from config.settings import PostroomSettings
from workers.client import PostroomClient
from workers.connection.cluster_connection import SETTING, connect_cluster
from workers.registry import TaskRegistry, registry

__all__ = ["SETTING", "connect_cluster", "connect_cluster_client"]


async def connect_cluster_client(
    settings: PostroomSettings, tasks: TaskRegistry = registry
) -> PostroomClient:
    """A PostroomClient whose commands go to the Cluster `POSTROOM_REDIS_CLUSTER` names."""
    if not settings.redis_cluster:
        await connect_cluster(settings)  # raises, naming the setting
    return await PostroomClient.connect(settings, tasks)
