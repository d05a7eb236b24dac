"""valkey-servers that want credentials: one with `requirepass`, one with ACL users.

Each listens on a free loopback port; the tests' own admin connections give the server's
password (the `default` user), the postroom connections under test give theirs.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.processes import ServerProcess

# Nothing to disk: these servers live for one test module.
EPHEMERAL = ["--save", "", "--appendonly", "no"]


class AclServer(ServerProcess):
    """A server whose `default` user is the tests' admin; `add_user` creates others."""

    def url(self) -> str:
        """REDIS_URL without credentials (REDIS_USERNAME/REDIS_PASSWORD carry them)."""
        return f"redis://{self.address}/0"

    def add_user(self, rule: str, name: str | None = None) -> tuple[str, str]:
        """A new user with `rule` (ACL SETUSER syntax); its name and password."""
        name = name or f"user-{uuid.uuid4().hex[:8]}"
        password = f"pw-{uuid.uuid4().hex}"
        with self.client() as admin:
            admin.execute_command(
                "ACL", "SETUSER", name, "reset", "on", f">{password}", *rule.split()
            )
        return name, password

    def denials(self, user: str) -> list[dict[str, object]]:
        """What ACL LOG recorded as refused to `user` (a command, a key or a channel)."""
        with self.client() as admin:
            entries = admin.execute_command("ACL", "LOG", "1000")
        found = []
        for entry in entries:
            fields = dict(zip(entry[::2], entry[1::2], strict=True))
            if fields.get("username") == user:
                found.append(fields)
        return found


@contextlib.contextmanager
def started(server: ServerProcess) -> Iterator[ServerProcess]:
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclServer]:
    """`requirepass` only: the `default` user with a password, as most managed Redis have."""
    password = f"requirepass-{uuid.uuid4().hex}"
    directory = tmp_path_factory.mktemp("password-redis")
    server = AclServer(Path(directory), [*EPHEMERAL, "--requirepass", password], password)
    with started(server):
        yield server


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclServer]:
    """ACL users added by each test; the `default` user is the tests' admin."""
    password = f"admin-{uuid.uuid4().hex}"
    directory = tmp_path_factory.mktemp("acl-redis")
    args = [*EPHEMERAL, "--requirepass", password, "--acllog-max-len", "1000"]
    server = AclServer(Path(directory), args, password)
    with started(server):
        yield server
