"""postroom's runtime: register tasks with `@task`, enqueue with `PostroomClient`.

`Settings` is what `arq workers.Settings` runs: every queue in one process.

Each name is imported from its module on first use (PEP 562), so a web app that only
enqueues loads the client side, never the supervisor and the worker behind `Settings`.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; `_EXPORTS` is the same at run time (test_imports)
    from config.queues import BackoffPolicy, QueueName
    from workers.client import JobFailedError, JobHandle, PostroomClient
    from workers.context import JobContext
    from workers.crontab import Cron
    from workers.error_text import own_words
    from workers.errors import (
        ConfigError,
        PayloadValidationError,
        PermanentError,
        PostroomError,
        RateLimited,
        TaskDefinitionError,
        UnknownTaskError,
    )
    from workers.keyring.envelope import Envelope
    from workers.keyring.errors import (
        DecryptionError,
        EncryptionError,
        MalformedEnvelope,
        UnknownKeyError,
    )
    from workers.keyring.keyring import Keyring
    from workers.keyring.loading import GENERATED_KEY_ID, decode_key, load_keyring
    from workers.observe.trace_gate import client_span
    from workers.registry import JobRequest, Task, TaskRegistry, registry, task
    from workers.resources import ResourceFactory
    from workers.runner.arq_settings import Settings
    from workers.store.enqueue import Checkpoint
    from workers.store.job_status import JobInfo, JobState
    from workers.store.key_migration import MarkerRule, marker_rule
    from workers.store.keys import Keys
    from workers.store.priority import Priority
    from workers.store.progress import Progress
    from workers.store.queue_stats import QueueStats

# Each public name's module.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "config.queues": ("BackoffPolicy", "QueueName"),
    "workers.runner.arq_settings": ("Settings",),
    "workers.client": ("JobFailedError", "JobHandle", "PostroomClient"),
    "workers.context": ("JobContext",),
    "workers.crontab": ("Cron",),
    "workers.error_text": ("own_words",),
    "workers.keyring.envelope": ("Envelope",),
    "workers.keyring.errors": (
        "DecryptionError",
        "EncryptionError",
        "MalformedEnvelope",
        "UnknownKeyError",
    ),
    "workers.keyring.keyring": ("Keyring",),
    "workers.keyring.loading": ("GENERATED_KEY_ID", "decode_key", "load_keyring"),
    "workers.store.enqueue": ("Checkpoint",),
    "workers.errors": (
        "ConfigError",
        "PayloadValidationError",
        "PermanentError",
        "PostroomError",
        "RateLimited",
        "TaskDefinitionError",
        "UnknownTaskError",
    ),
    "workers.store.job_status": ("JobInfo", "JobState"),
    "workers.store.key_migration": ("MarkerRule", "marker_rule"),
    "workers.store.keys": ("Keys",),
    "workers.store.priority": ("Priority",),
    "workers.store.progress": ("Progress",),
    "workers.store.queue_stats": ("QueueStats",),
    "workers.registry": ("JobRequest", "Task", "TaskRegistry", "registry", "task"),
    "workers.resources": ("ResourceFactory",),
    "workers.observe.trace_gate": ("client_span",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "GENERATED_KEY_ID",
    "BackoffPolicy",
    "Checkpoint",
    "ConfigError",
    "Cron",
    "DecryptionError",
    "EncryptionError",
    "Envelope",
    "JobContext",
    "JobFailedError",
    "JobHandle",
    "JobInfo",
    "JobRequest",
    "JobState",
    "Keyring",
    "Keys",
    "MalformedEnvelope",
    "MarkerRule",
    "PayloadValidationError",
    "PermanentError",
    "PostroomClient",
    "PostroomError",
    "Priority",
    "Progress",
    "QueueName",
    "QueueStats",
    "RateLimited",
    "ResourceFactory",
    "Settings",
    "Task",
    "TaskDefinitionError",
    "TaskRegistry",
    "UnknownKeyError",
    "UnknownTaskError",
    "client_span",
    "decode_key",
    "load_keyring",
    "marker_rule",
    "own_words",
    "registry",
    "task",
]


class _Package(ModuleType):
    """Keeps a public name that is also a submodule's (`registry`): importing the submodule
    would otherwise bind the module over the name it exports."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOME and isinstance(value, ModuleType) and value.__name__ == f"workers.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


class _OnFirstUse(ModuleType):
    """Stands in for a package until one of its names is used, then becomes it.

    redis-py 5.3 imports PyJWT at start (for Entra ID tokens, redis/auth/token.py), and
    PyJWT most of `cryptography`: a third of a worker's memory, for a login method postroom
    never uses. Its submodules still import (the stand-in has the package's path); the first
    name read imports the real package in its place.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = import_module(self.__name__)
        for key, value in list(self.__dict__.items()):  # submodules imported through it
            if isinstance(value, ModuleType) and key not in real.__dict__:
                setattr(real, key, value)
        self.__dict__.update(real.__dict__)
        return getattr(real, name)


def _defer(package: str) -> None:
    from importlib.util import find_spec

    if package in sys.modules:
        return
    spec = find_spec(package)
    if spec is not None and spec.submodule_search_locations is not None:
        stand_in = _OnFirstUse(package)
        stand_in.__path__ = list(spec.submodule_search_locations)
        sys.modules[package] = stand_in


_defer("jwt")


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, then keep the name here."""
    try:
        module = _HOME[name]
    except KeyError:
        raise AttributeError(f"module 'workers' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
