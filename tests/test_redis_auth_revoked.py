"""Credentials revoked while postroom runs, against a real ACL Redis the tests start: a
worker logs one error naming the variable, retries for POSTROOM_REDIS_AUTH_GRACE, then exits
non-zero; the job it held is recovered by a worker whose credentials are good. The client
raises the same named error at once instead of retrying."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import tests.security_tasks  # noqa: F401 - registers the tasks enqueued here
from config.errors import ConfigError
from tests.conftest import ROOT, eventually, running_worker
from tests.security_tasks import Letter, deliver, held
from tests.servers.guarded import AclServer
from tests.test_redis_auth import guarded_settings
from workers.client import PostroomClient
from workers.connection.acl_rule import acl_rule
from workers.store.job_status import JobState

# How each revocation is done on the server, and what the worker's error then says.
REVOCATIONS = {
    # The user switched off (or its password changed): every new connection is refused.
    "off": (["off"], "REDIS_USERNAME/REDIS_PASSWORD: Redis at redis://127.0.0.1:"),
    # Its key patterns taken away: logged in, but every key is refused.
    "resetkeys": (["resetkeys"], "REDIS_USERNAME: the ACL user "),
}


def revoke(server: AclServer, user: str, rule: list[str]) -> None:
    """Apply `rule` to `user` and drop its connections, as an operator revoking it does."""
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", user, *rule)
        admin.execute_command("CLIENT", "KILL", "USER", user)


@pytest.mark.parametrize("how", sorted(REVOCATIONS))
async def test_redis_auth_revoked_worker_exits_after_the_grace_and_its_job_is_recovered(
    acl_redis: AclServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.WARNING)
    rule, named = REVOCATIONS[how]
    prefix = f"rev-{uuid.uuid4().hex[:10]}"
    user, password = acl_redis.add_user(acl_rule(prefix))
    rescuer, rescuer_password = acl_redis.add_user(acl_rule(prefix))
    good = guarded_settings(
        acl_redis,
        tmp_path,
        key_prefix=prefix,
        redis_username=rescuer,
        redis_password=rescuer_password,
        lease_seconds=2,
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": acl_redis.url(),
        "REDIS_USERNAME": user,
        "REDIS_PASSWORD": password,
        "POSTROOM_KEY_PREFIX": prefix,
        "POSTROOM_TASK_MODULES": "tests.security_tasks",
        "POSTROOM_DATA_DIR": str(tmp_path / "revoked"),
        "POSTROOM_LEASE_SECONDS": "2",
        "POSTROOM_SHUTDOWN_GRACE": "1",
        "POSTROOM_REDIS_AUTH_GRACE": "3",
    }
    release = tmp_path / "release"
    log = tmp_path / "worker.log"
    async with await PostroomClient.connect(good) as client:
        with log.open("w") as output:
            worker = subprocess.Popen(
                [sys.executable, "-m", "workers", "worker", "--queues", "message-delivery"],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            job = await client.enqueue(held.call(str(release)))

            async def running() -> bool:
                return await job.status() == JobState.RUNNING

            await eventually(running, "the worker runs the job")
            revoke(acl_redis, user, rule)
            code = worker.wait(timeout=120)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        text = log.read_text()
        assert code == 2, text
        errors = [line for line in text.splitlines() if "POSTROOM_REDIS_AUTH_GRACE" in line]
        first, *_, last = errors
        assert named in first and "retrying for 3s" in first, first
        assert last.startswith(f"postroom: {named}") and "still refused after 3s" in last, last
        assert len([line for line in errors if "retrying for" in line]) == 1  # logged once
        assert password not in text
        release.touch()
        async with running_worker(good):
            assert await job.result(timeout=60) == "released"
    # Its lease lapsed (the revoked worker could neither renew nor put it back): recovered.
    assert "job recovered from the unfinished run" in caplog.text


async def test_redis_auth_revoked_client_raises_the_named_error_at_once(
    acl_redis: AclServer, tmp_path: Path
) -> None:
    prefix = f"rev-{uuid.uuid4().hex[:10]}"
    user, password = acl_redis.add_user(acl_rule(prefix))
    settings = guarded_settings(
        acl_redis, tmp_path, key_prefix=prefix, redis_username=user, redis_password=password
    )
    async with await PostroomClient.connect(settings) as client:
        await client.enqueue(deliver.call(Letter(messageId="m-1", content="hi")))
        revoke(acl_redis, user, ["off"])
        with pytest.raises(ConfigError) as caught:
            await client.enqueue(deliver.call(Letter(messageId="m-2", content="hi")))
    message = str(caught.value)
    assert message.startswith("REDIS_USERNAME/REDIS_PASSWORD: Redis at redis://127.0.0.1:")
    assert f"refused user {user!r}" in message and password not in message
