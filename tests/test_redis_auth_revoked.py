"""Credentials revoked while postroom runs, against a real ACL Redis the tests start: a
worker logs one error naming the variable, retries for POSTROOM_REDIS_AUTH_GRACE, then exits
non-zero; the job it held is recovered by a worker whose credentials are good. The client
raises the same named error at once instead of retrying; the admin API answers 503 with it;
a RabbitMQ event consumer stops after the grace and leaves its event to a good one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

import tests.security_tasks  # noqa: F401 - registers the tasks enqueued here
from config.errors import ConfigError
from config.settings import PostroomSettings
from tests.conftest import ROOT, eventually, running_worker
from tests.events.rabbitmq_support import consuming_here, rabbit_settings
from tests.security_tasks import Letter, deliver, held
from tests.servers.guarded import AclServer
from tests.servers.rabbitmq import Broker
from tests.test_redis_auth import guarded_settings
from workers.client import PostroomClient
from workers.connection.acl_rule import acl_rule
from workers.connection.refusal_grace import RedisRefused
from workers.events import DomainEvent, EventHandlers, RabbitMQEventBus
from workers.events.rabbitmq.consumer import EventConsumer
from workers.ops.admin import create_admin_app
from workers.store.job_status import JobState

ADMIN_TOKEN = "admin-token-of-the-revocation-test"
events = EventHandlers()
handled: set[str] = set()


class Revoked(DomainEvent):
    type: Literal["tests.revoked.noted"] = "tests.revoked.noted"


@events.on(Revoked)
async def note(event: Revoked) -> None:
    handled.add(event.id)


# How each revocation is done on the server, and what the worker's error then says.
REVOCATIONS = {
    # The user switched off (or its password changed): every new connection is refused.
    "off": (["off"], "REDIS_USERNAME/REDIS_PASSWORD: Redis at redis://127.0.0.1:"),
    # Its key patterns taken away: logged in, but every key is refused.
    "resetkeys": (["resetkeys"], "REDIS_USERNAME: the ACL user "),
}


def acl_user(
    server: AclServer, tmp_path: Path, prefix: str, **extra: Any
) -> tuple[str, str, PostroomSettings]:
    """A new user with postroom's ACL rule for `prefix`: its name, password and settings."""
    user, password = server.add_user(acl_rule(prefix))
    settings = guarded_settings(
        server, tmp_path, key_prefix=prefix, redis_username=user, redis_password=password, **extra
    )
    return user, password, settings


def worker_env(
    server: AclServer, prefix: str, user: str, password: str, data: Path
) -> dict[str, str]:
    """A `postroom worker` process's environment: `user`'s credentials, a 3 s grace."""
    return {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": server.url(),
        "REDIS_USERNAME": user,
        "REDIS_PASSWORD": password,
        "POSTROOM_KEY_PREFIX": prefix,
        "POSTROOM_TASK_MODULES": "tests.security_tasks",
        "POSTROOM_DATA_DIR": str(data),
        "POSTROOM_LEASE_SECONDS": "2",
        "POSTROOM_SHUTDOWN_GRACE": "1",
        "POSTROOM_REDIS_AUTH_GRACE": "3",
    }


@contextlib.asynccontextmanager
async def postroom_process(
    env: dict[str, str], log: Path, *args: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m workers ARGS`, its output in `log`; killed if it still runs at the end."""
    with log.open("w") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "workers", *args),
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def exit_after_revoking(
    process: asyncio.subprocess.Process, server: AclServer, user: str, rule: list[str]
) -> int:
    """Revoke `user` (`rule`) under the running `process`; its exit code."""
    revoke(server, user, rule)
    return await asyncio.wait_for(process.wait(), timeout=120)  # a bound, not a sleep


def revoke(server: AclServer, user: str, rule: list[str], *, kill: bool = True) -> None:
    """Apply `rule` to `user` and (`kill`) drop its connections, as an operator revoking it
    does; a rule on keys or commands applies to open connections too."""
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", user, *rule)
        if kill:
            admin.execute_command("CLIENT", "KILL", "USER", user)


@pytest.mark.parametrize("how", sorted(REVOCATIONS))
async def test_redis_auth_revoked_worker_exits_after_the_grace_and_its_job_is_recovered(
    acl_redis: AclServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    caplog.set_level(logging.WARNING)
    rule, named = REVOCATIONS[how]
    prefix = f"rev-{uuid.uuid4().hex[:10]}"
    user, password = acl_redis.add_user(acl_rule(prefix))
    *_, good = acl_user(acl_redis, tmp_path, prefix, lease_seconds=2)  # the rescuer
    env = worker_env(acl_redis, prefix, user, password, tmp_path / "revoked")
    release = tmp_path / "release"
    log = tmp_path / "worker.log"
    async with await PostroomClient.connect(good) as client:
        async with postroom_process(env, log, "worker", "--queues", "message-delivery") as worker:
            job = await client.enqueue(held.call(str(release)))

            async def running() -> bool:
                return await job.status() == JobState.RUNNING

            await eventually(running, "the worker runs the job")
            code = await exit_after_revoking(worker, acl_redis, user, rule)
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


async def test_redis_auth_revoked_process_pool_stops_instead_of_restarting_its_children(
    acl_redis: AclServer, tmp_path: Path
) -> None:
    """`--processes 2`: a child that exits for a setting to fix is not restarted (it would
    be refused again); the pool stops the others and exits 2 for the orchestrator."""
    prefix = f"rev-{uuid.uuid4().hex[:10]}"
    user, password = acl_redis.add_user(acl_rule(prefix))
    env = worker_env(acl_redis, prefix, user, password, tmp_path)
    log = tmp_path / "pool.log"
    args = ("worker", "--processes", "2", "--queues", "message-delivery")
    async with postroom_process(env, log, *args) as pool:

        async def serving() -> bool:
            return log.read_text().count("worker started") == 2

        await eventually(serving, "both worker processes serve")
        code = await exit_after_revoking(pool, acl_redis, user, ["off"])
    text = log.read_text()
    assert code == 2, text
    assert "stopping every worker process" in text
    assert "restarting in" not in text and password not in text


async def test_redis_auth_revoked_client_raises_the_named_error_at_once(
    acl_redis: AclServer, tmp_path: Path
) -> None:
    user, password, settings = acl_user(acl_redis, tmp_path, f"rev-{uuid.uuid4().hex[:10]}")
    async with await PostroomClient.connect(settings) as client:
        await client.enqueue(deliver.call(Letter(messageId="m-1", content="hi")))
        revoke(acl_redis, user, ["off"])
        # The killed connection is dropped (redis-py raises once on it): the next one logs in.
        await client.redis.connection_pool.disconnect()
        with pytest.raises(ConfigError) as caught:
            await client.enqueue(deliver.call(Letter(messageId="m-2", content="hi")))
    message = str(caught.value)
    assert message.startswith("REDIS_USERNAME/REDIS_PASSWORD: Redis at redis://127.0.0.1:")
    assert f"refused user {user!r}" in message and password not in message


async def test_redis_auth_revoked_admin_api_answers_503_naming_the_variable(
    acl_redis: AclServer, tmp_path: Path
) -> None:
    user, password, settings = acl_user(acl_redis, tmp_path, f"rev-{uuid.uuid4().hex[:10]}")
    app = create_admin_app(settings=settings, token=ADMIN_TOKEN)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://admin", headers=headers
        ) as api:
            assert (await api.get("/queues")).status_code == 200
            revoke(acl_redis, user, ["resetkeys"], kill=False)
            answer = await api.get("/queues")
    assert answer.status_code == 503
    detail = answer.json()["detail"]
    assert detail.startswith(f"REDIS_USERNAME: the ACL user {user!r} of Redis at redis://")
    assert "No permissions to access a key" in detail and password not in detail


async def test_redis_auth_revoked_event_consumer_stops_after_the_grace_and_leaves_the_event(
    acl_redis: AclServer, rabbitmq: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    prefix = f"rev-{uuid.uuid4().hex[:10]}"
    user, password, settings = acl_user(acl_redis, tmp_path, prefix)
    *_, good = acl_user(acl_redis, tmp_path, prefix)
    rabbit = rabbit_settings(
        settings, rabbitmq, redis_username=user, redis_password=password, redis_auth_grace=2
    )
    credentials = {"redis_username": good.redis_username, "redis_password": good.redis_password}
    rescuing = rabbit.model_copy(update=credentials)
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    event = Revoked()
    try:
        async with await PostroomClient.connect(rabbit) as client:
            consumer = EventConsumer(rabbit, client, events, group="revoked")
            run = asyncio.create_task(consumer.run())
            await asyncio.wait_for(consumer.ready.wait(), timeout=60)
            revoke(acl_redis, user, ["resetkeys"], kill=False)
            await bus.publish(event)
            with pytest.raises(RedisRefused) as caught:
                await asyncio.wait_for(run, timeout=120)  # a bound, not a sleep
        assert str(caught.value).startswith(f"REDIS_USERNAME: the ACL user {user!r} of Redis at")
        assert "still refused after 2s" in str(caught.value)
        assert len([m for m in caplog.messages if "retrying for 2s" in m]) == 1
        assert event.id not in handled
        async with (
            await PostroomClient.connect(rescuing) as client,
            consuming_here(rescuing, client, events, "revoked"),
        ):

            async def noted() -> bool:
                return event.id in handled

            await eventually(noted, "a consumer with good credentials handles the event")
    finally:
        await bus.close()
