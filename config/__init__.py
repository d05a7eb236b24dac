"""Postroom's configuration: the queue table and the settings read from the environment."""

from config.errors import ConfigError, PostroomError
from config.queues import BackoffPolicy, QueueConfig, QueueName, QueueTable
from config.settings import PostroomSettings, load_settings

__all__ = [
    "BackoffPolicy",
    "ConfigError",
    "PostroomError",
    "PostroomSettings",
    "QueueConfig",
    "QueueName",
    "QueueTable",
    "load_settings",
]
