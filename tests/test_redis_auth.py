"""Redis AUTH and ACL users, end to end against servers the tests start: a worker and the
client run jobs with the right credentials, and wrong ones stop the start naming the
variable, never printing the password."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.security_tasks  # noqa: F401 - registers the tasks enqueued here
from config.settings import PostroomSettings, load_settings
from tests.redis_security import client_refusal, refusal, run_jobs_end_to_end, run_postroom
from tests.servers.cluster import LocalCluster
from tests.servers.guarded import AclServer
from workers.client import PostroomClient
from workers.connection.acl_rule import CLUSTER_COMMANDS, acl_rule


def guarded_settings(server: AclServer, tmp_path: Path, **credentials: Any) -> PostroomSettings:
    """Settings for `server` under a fresh key prefix; `credentials` as REDIS_* fields."""
    values: dict[str, Any] = {
        "redis_url": server.url(),
        "key_prefix": f"sec-{uuid.uuid4().hex[:10]}",
        "data_dir": tmp_path,
        "shutdown_grace": 5,
        **credentials,
    }
    return load_settings(**values)


async def test_redis_auth_worker_and_client_run_jobs_with_the_password(
    password_redis: AclServer, tmp_path: Path
) -> None:
    """REDIS_PASSWORD beside a REDIS_URL without credentials, then the password in the URL."""
    password = str(password_redis.password)
    await run_jobs_end_to_end(guarded_settings(password_redis, tmp_path, redis_password=password))
    in_url = f"redis://:{password}@{password_redis.address}/0"
    await run_jobs_end_to_end(guarded_settings(password_redis, tmp_path, redis_url=in_url))


async def test_redis_auth_wrong_or_missing_password_stops_the_start_naming_the_variable(
    password_redis: AclServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{uuid.uuid4().hex}"
    real = str(password_redis.password)
    bad = guarded_settings(password_redis, tmp_path, redis_password=wrong)
    message = refusal(bad)
    assert message.startswith("REDIS_PASSWORD: Redis at redis://127.0.0.1:")
    assert "refused user 'default'" in message and "WRONGPASS" not in message
    assert (await client_refusal(bad)) == message

    bad_url = guarded_settings(
        password_redis, tmp_path, redis_url=f"redis://:{wrong}@{password_redis.address}/0"
    )
    assert refusal(bad_url).startswith("REDIS_URL: Redis at redis://127.0.0.1:")

    missing = guarded_settings(password_redis, tmp_path)
    message = refusal(missing)
    assert message.startswith("REDIS_PASSWORD: Redis at redis://127.0.0.1:")
    assert "requires a password and none was given" in message
    assert "requires a password" in await client_refusal(missing)

    unknown = guarded_settings(
        password_redis, tmp_path, redis_username="nobody", redis_password=real
    )
    assert refusal(unknown).startswith("REDIS_USERNAME/REDIS_PASSWORD: Redis at ")
    assert "refused user 'nobody'" in refusal(unknown)

    shown = caplog.text + message + refusal(bad) + refusal(bad_url)
    assert wrong not in shown and real not in shown


def test_redis_auth_worker_process_exits_with_the_variable_named_and_no_password(
    password_redis: AclServer, tmp_path: Path
) -> None:
    """`postroom worker` and an admin command, as an operator starts them: exit 2, one line."""
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": f"redis://:{wrong}@{password_redis.address}/0",
        "POSTROOM_TASK_MODULES": "tests.security_tasks",
        "POSTROOM_DATA_DIR": str(tmp_path),
        "POSTROOM_LOG_LEVEL": "DEBUG",
    }
    for command in (["worker"], ["stats"]):
        done = run_postroom(env, *command)
        assert done.returncode == 2, done.stderr
        assert "REDIS_URL: Redis at redis://127.0.0.1:" in done.stderr
        assert wrong not in done.stdout + done.stderr


async def test_redis_acl_user_with_the_documented_rule_runs_jobs_end_to_end(
    acl_redis: AclServer, tmp_path: Path
) -> None:
    """The rule of workers/connection/acl_rule.py (the README's) is enough: nothing postroom
    sends is refused (ACL LOG stays empty for the user)."""
    prefix = f"acl-{uuid.uuid4().hex[:10]}"
    user, password = acl_redis.add_user(f"{acl_rule(prefix)}")
    settings = guarded_settings(
        acl_redis, tmp_path, key_prefix=prefix, redis_username=user, redis_password=password
    )
    await run_jobs_end_to_end(settings)
    assert acl_redis.denials(user) == []
    # The same user cannot reach another deployment's keys on the server.
    with acl_redis.client() as admin:
        admin.set("{other:message-delivery}:queue", "theirs")
    async with await PostroomClient.connect(settings) as client:
        with pytest.raises(Exception, match="No permissions to access a key"):
            await client.redis.get("{other:message-delivery}:queue")


def test_redis_acl_user_without_the_rule_gets_a_start_up_error_naming_the_setting(
    acl_redis: AclServer, tmp_path: Path
) -> None:
    prefix = f"acl-{uuid.uuid4().hex[:10]}"

    def start_with(rule: str) -> str:
        user, password = acl_redis.add_user(rule)
        settings = guarded_settings(
            acl_redis, tmp_path, key_prefix=prefix, redis_username=user, redis_password=password
        )
        message = refusal(settings)
        assert password not in message
        return message

    other_keys = start_with("~other:* &* +@all")
    assert other_keys.startswith("REDIS_USERNAME: the ACL user 'user-")
    assert "lacks a permission postroom needs (No permissions to access a key: {" in other_keys
    assert "postroom's ACL rule (README, Redis security)" in other_keys
    no_scripts = start_with(f"{acl_rule(prefix)} -@scripting")
    assert "has no permissions to run the 'evalsha' command" in no_scripts
    no_info = start_with(acl_rule(prefix).replace(" +info", ""))
    assert "has no permissions to run the 'info' command" in no_info
    no_clock = start_with(acl_rule(prefix).replace(" +time", ""))
    assert "has no permissions to run the 'time' command" in no_clock
    disabled_user, password = acl_redis.add_user(acl_rule(prefix))
    with acl_redis.client() as admin:
        admin.execute_command("ACL", "SETUSER", disabled_user, "off")
    settings = guarded_settings(
        acl_redis, tmp_path, redis_username=disabled_user, redis_password=password
    )
    assert f"refused user '{disabled_user}'" in refusal(settings)


@pytest.fixture(scope="module")
def password_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three primaries, each with the same `requirepass`."""
    password = f"cluster-{uuid.uuid4().hex}"
    with LocalCluster(tmp_path_factory.mktemp("password-cluster"), password=password) as cluster:
        yield cluster


def cluster_settings(cluster: LocalCluster, tmp_path: Path, **credentials: Any) -> PostroomSettings:
    values: dict[str, Any] = {
        "redis_cluster": cluster_nodes(cluster),
        "key_prefix": f"sec-{uuid.uuid4().hex[:10]}",
        "data_dir": tmp_path,
        "shutdown_grace": 5,
        **credentials,
    }
    return load_settings(**values)


def cluster_nodes(cluster: LocalCluster) -> str:
    """The value of POSTROOM_REDIS_CLUSTER."""
    return ",".join(f"{host}:{port}" for host, port in cluster.startup_nodes)


async def test_redis_auth_cluster_with_a_password_runs_jobs_and_names_a_wrong_one(
    password_cluster: LocalCluster, tmp_path: Path
) -> None:
    password = str(password_cluster.password)
    await run_jobs_end_to_end(cluster_settings(password_cluster, tmp_path, redis_password=password))
    wrong = f"wrong-{uuid.uuid4().hex}"
    message = await client_refusal(
        cluster_settings(password_cluster, tmp_path, redis_password=wrong)
    )
    assert message.startswith("REDIS_PASSWORD: the Cluster at POSTROOM_REDIS_CLUSTER=127.0.0.1:")
    assert "refused user 'default'" in message and wrong not in message
    env = {
        "PATH": "/usr/bin:/bin",
        "POSTROOM_REDIS_CLUSTER": cluster_nodes(password_cluster),
        "REDIS_PASSWORD": wrong,
        "POSTROOM_TASK_MODULES": "tests.security_tasks",
        "POSTROOM_DATA_DIR": str(tmp_path),
    }
    done = run_postroom(env, "worker")
    assert done.returncode == 2, done.stderr
    assert "REDIS_PASSWORD: the Cluster at POSTROOM_REDIS_CLUSTER=" in done.stderr
    assert wrong not in done.stderr


async def test_redis_acl_user_on_a_cluster_runs_jobs_with_the_rule_and_the_slot_map(
    password_cluster: LocalCluster, tmp_path: Path
) -> None:
    """On a Cluster the rule needs the slot map too (CLUSTER_COMMANDS), on every node."""
    prefix = f"acl-{uuid.uuid4().hex[:10]}"
    user, password = "postroom-cluster", f"pw-{uuid.uuid4().hex}"
    rule = f"{acl_rule(prefix)} {' '.join(CLUSTER_COMMANDS)}"
    for node in password_cluster.nodes:
        with node.client() as admin:
            admin.execute_command(
                "ACL", "SETUSER", user, "reset", "on", f">{password}", *rule.split()
            )
    settings = cluster_settings(
        password_cluster, tmp_path, key_prefix=prefix, redis_username=user, redis_password=password
    )
    await run_jobs_end_to_end(settings)
    for node in password_cluster.nodes:
        with node.client() as admin:
            entries = admin.execute_command("ACL", "LOG", "1000")
        assert [e for e in entries if user.encode() in e] == []


def test_redis_acl_rule_command_prints_the_rule_of_the_prefix(tmp_path: Path) -> None:
    """`postroom acl-rule`: the line to give ACL SETUSER (or put in an ACL file), for the
    configured prefix, with the Cluster's extra where one is configured."""
    env = {"PATH": "/usr/bin:/bin", "POSTROOM_KEY_PREFIX": "shop-1", "REDIS_PASSWORD": "not-shown"}
    done = run_postroom(env, "acl-rule", "--user", "shop")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "ACL SETUSER shop on >CHANGE-ME-LONG-RANDOM-PASSWORD resetkeys ~{shop-1:* ~shop-1:* "
        "resetchannels &shop-1:* -@all +@read +@write +@keyspace +@scripting +@pubsub "
        "+@blocking +@connection -@dangerous -function -script|flush -script|kill +info +time\n"
    )
    on_cluster = run_postroom({**env, "POSTROOM_REDIS_CLUSTER": "10.0.0.1:7000"}, "acl-rule")
    assert on_cluster.stdout.startswith("ACL SETUSER postroom on >CHANGE-ME")
    assert on_cluster.stdout.endswith(" +info +time +cluster|slots\n")
    assert "not-shown" not in done.stdout + on_cluster.stdout
