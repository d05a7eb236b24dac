"""Planted secrets never leave: a Redis password, an admin token, an encryption key, a
payload's access token and a message body are planted in one deployment, which then runs
jobs (one fails, retries and is dead-lettered), is read through the admin API, the CLI and
/metrics, logs at DEBUG, and is started wrongly; every captured output is grepped for them."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

import tasks  # noqa: F401 - registers send-message, run by the worker below
import tests.security_tasks  # noqa: F401
from config.redaction import redact_credentials
from config.settings import PostroomSettings, load_settings
from tests.conftest import ROOT, eventually
from tests.security_tasks import Letter, deliver, flaky
from tests.servers.guarded import EPHEMERAL, AclServer, started
from tests.servers.processes import free_port
from workers.client import PostroomClient
from workers.observe.masking import mask
from workers.ops.admin import create_admin_app
from workers.store.job_status import JobState


@dataclass(frozen=True)
class Planted:
    """One value of each kind of secret, unique to the run, so a find is never a chance."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def redis_password(self) -> str:
        return f"redis-pw-{self.tag}"

    @property
    def wrong_password(self) -> str:
        return f"wrong-redis-pw-{self.tag}"

    @property
    def admin_token(self) -> str:
        return f"admin-token-{self.tag}"

    @property
    def named_token(self) -> str:
        """An operator's own token (POSTROOM_ADMIN_TOKENS), the audit trail names its owner."""
        return f"named-token-{self.tag}"

    @property
    def short_token(self) -> str:
        """An admin token too short to be accepted: refused, and not shown either."""
        return f"tok-{self.tag[:8]}"

    @property
    def encryption_key(self) -> str:
        return base64.b64encode(f"encryption-key-{self.tag}".encode().ljust(32, b"!")).decode()

    @property
    def access_token(self) -> str:
        return f"access-token-{self.tag}"

    @property
    def url_password(self) -> str:
        return f"url-pw-{self.tag}"

    @property
    def body(self) -> str:
        return f"body-marker-{self.tag}"

    def every(self) -> dict[str, str]:
        return {
            "Redis password": self.redis_password,
            "wrong Redis password": self.wrong_password,
            "admin token": self.admin_token,
            "named admin token": self.named_token,
            "short admin token": self.short_token,
            "encryption key": self.encryption_key,
            "payload access token": self.access_token,
            "message body": self.body,
            "password in a provider's URL": self.url_password,
        }


@pytest.fixture
def planted() -> Planted:
    return Planted()


@pytest.fixture
def secret_redis(planted: Planted, tmp_path: Path) -> Iterator[AclServer]:
    """A server whose password is the planted one."""
    server = AclServer(tmp_path / "redis", [*EPHEMERAL, "--requirepass", planted.redis_password])
    server.password = planted.redis_password
    with started(server):
        yield server


class Outputs:
    """Every text an operator or a log shipper could see, by where it came from."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, where: str, text: str | bytes) -> str:
        shown = text.decode(errors="replace") if isinstance(text, bytes) else text
        self.texts[where] = self.texts.get(where, "") + shown
        return shown

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        return [
            f"{kind} in {where}"
            for where, text in self.texts.items()
            for kind, secret in secrets.items()
            if secret in text
        ]


def admin_tokens(planted: Planted) -> str:
    return orjson.dumps({"ops-alice": {"token": planted.named_token, "role": "operator"}}).decode()


def letter_payload(planted: Planted, message_id: str) -> dict[str, object]:
    """A `tests.security.deliver` payload as JSON, every secret of a payload in it."""
    return {
        "letter": {
            "messageId": message_id,
            "content": planted.body,
            "accessToken": planted.access_token,
            "callbackUrl": f"https://bot:{planted.url_password}@push.example.test/send",
        }
    }


def deployment_env(planted: Planted, url: str, tmp_path: Path, prefix: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "REDIS_URL": url,
        "POSTROOM_KEY_PREFIX": prefix,
        "POSTROOM_DATA_DIR": str(tmp_path / "data"),
        "POSTROOM_TASK_MODULES": "tasks,tests.security_tasks",
        "POSTROOM_ADMIN_TOKEN": planted.admin_token,
        "POSTROOM_ADMIN_TOKENS": admin_tokens(planted),
        "POSTROOM_ENCRYPTION__KEYS": orjson.dumps({"k1": planted.encryption_key}).decode(),
        "POSTROOM_ENCRYPTION__ACTIVE_KEY_ID": "k1",
        "POSTROOM_LOG_LEVEL": "DEBUG",
        # The tasks' own error text in the log lines too (off by default with payloads
        # sealed): still never a credential or a body.
        "POSTROOM_LOG_ERROR_DETAILS": "true",
        "POSTROOM_SHUTDOWN_GRACE": "5",
    }


def start_worker(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """`postroom worker` as deployed, its output (DEBUG) kept in `log_file`."""
    with log_file.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "workers", "worker"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(300)  # a dozen CLI processes, each importing postroom afresh
async def test_secrets_never_reach_logs_views_metrics_or_errors(
    planted: Planted,
    secret_redis: AclServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    outputs = Outputs()
    prefix = f"sec-{planted.tag}"
    url = f"redis://:{planted.redis_password}@{secret_redis.address}/0"
    env = deployment_env(planted, url, tmp_path, prefix)
    settings = load_settings(
        redis_url=url,
        key_prefix=prefix,
        data_dir=tmp_path / "data",
        admin_token=planted.admin_token,
        admin_tokens=admin_tokens(planted),
        encryption={"keys": {"k1": planted.encryption_key}, "active_key_id": "k1"},
    )
    metrics_port = free_port()
    log_file = tmp_path / "worker.log"
    worker = start_worker({**env, "POSTROOM_METRICS_PORT": str(metrics_port)}, log_file)
    try:
        async with await PostroomClient.connect(settings) as client:
            letter = Letter(
                messageId="m-1",
                content=planted.body,
                accessToken=planted.access_token,
                callbackUrl=f"https://bot:{planted.url_password}@push.example.test/send",
            )
            failing = await client.enqueue(flaky.call(letter))
            done = await client.enqueue(deliver.call(letter))
            sent = await client.enqueue_payload(
                "send-message",
                {
                    "message": {
                        "messageId": "m-2",
                        "senderId": "u-1",
                        "recipientId": "u-2",
                        "conversationId": "c-1",
                        "content": planted.body,
                        "requiresEncryption": True,
                    }
                },
            )
            assert (await done.result(timeout=60))["messageId"] == "m-1"
            await sent.result(timeout=60)

            async def dead_lettered() -> bool:
                info = await client.job_info(failing.job_id)
                return info is not None and info.state is JobState.DEAD_LETTERED

            await eventually(dead_lettered, "the failing job is dead-lettered")
            await read_admin_api(settings, planted, failing.job_id, sent.job_id, outputs)
            async with httpx.AsyncClient() as http:
                metrics = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert "postroom_jobs_dead_lettered" in outputs.add("worker /metrics", metrics.text)
            read_cli(env, planted, failing.job_id, sent.job_id, outputs)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    worker_log = outputs.add("worker log (DEBUG)", log_file.read_bytes())
    assert "dead-lettered" in worker_log and " DEBUG " in worker_log
    assert "https://bot:***@push.example.test/send" in worker_log

    await bad_starts(planted, secret_redis, env, settings, outputs)
    outputs.add("in-process logs (DEBUG)", caplog.text)
    assert outputs.leaks(planted.every()) == []


async def read_admin_api(
    settings: PostroomSettings, planted: Planted, failed_id: str, sent_id: str, outputs: Outputs
) -> None:
    """Every read the admin API serves, with the token; and requests with a wrong one."""
    app = create_admin_app(settings=settings)
    auth = {"Authorization": f"Bearer {planted.admin_token}"}
    queue = "/queues/message-delivery"
    paths = [
        "/queues",
        queue,
        f"{queue}/jobs?state=dead-lettered",
        f"{queue}/jobs?state=complete",
        f"{queue}/failed",
        f"{queue}/failed/{failed_id}",
        f"/jobs/{failed_id}",
        f"/jobs/{sent_id}",
        "/metrics",
        "/health/ready",
    ]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as api:
            for path in paths:
                answer = await api.get(path, headers=auth)
                assert answer.status_code == 200, (path, answer.text)
                outputs.add(f"admin API GET {path}", answer.text)
            operator = {"Authorization": f"Bearer {planted.named_token}"}
            posted = await api.post(
                "/jobs",
                headers=operator,
                json={"task": "tests.security.deliver", "payload": letter_payload(planted, "m-3")},
            )
            assert posted.status_code == 201, posted.text
            outputs.add("admin API POST /jobs", posted.text)
            unknown = await api.post(
                "/jobs",
                headers=operator,
                json={"task": "no.such", "payload": letter_payload(planted, "m-4")},
            )
            assert unknown.status_code == 422
            outputs.add("admin API POST /jobs refused", unknown.text)
            trail = await api.get("/audit", headers=auth)
            assert trail.status_code == 200 and "ops-alice" in trail.text, trail.text
            outputs.add("admin API GET /audit", trail.text)
            wrong = {"Authorization": f"Bearer {planted.wrong_password}"}
            refused = await api.get(queue, headers=wrong)
            assert refused.status_code == 401
            outputs.add("admin API refusal", refused.text + str(refused.headers))
    letter = outputs.texts[f"admin API GET {queue}/failed/{failed_id}"]
    assert failed_id in letter and "provider answered 503" in letter
    assert "at https://bot:***@push.example.test/send" in letter  # the error, its URL redacted


def read_cli(
    env: dict[str, str], planted: Planted, failed_id: str, sent_id: str, outputs: Outputs
) -> None:
    """The operator commands, in both output formats."""
    commands = [
        ("table", ["stats"]),
        ("table", ["jobs", "message-delivery", "--state", "dead-lettered"]),
        ("table", ["job", sent_id]),
        *[
            (output, args)
            for output in ("table", "json")
            for args in (["failed", "message-delivery", "--traceback"], ["job", failed_id])
        ],
    ]
    payload = orjson.dumps(letter_payload(planted, "m-5")).decode()
    enqueued = cli(env, "enqueue", "tests.security.deliver", "--json", payload)
    assert enqueued.returncode == 0, enqueued.stderr
    outputs.add("CLI enqueue", enqueued.stdout + enqueued.stderr)
    commands += [("table", ["audit"]), ("json", ["audit"])]
    for output, args in commands:
        done = cli(env, *args, "--output", output)
        assert done.returncode == 0, done.stderr
        outputs.add(f"CLI {' '.join(args)} ({output})", done.stdout + done.stderr)
    assert failed_id in outputs.texts["CLI failed message-delivery --traceback (table)"]
    trail = outputs.texts["CLI audit (json)"]
    assert "ops-alice" in trail and "job.enqueue" in trail  # the API's and the CLI's enqueues


async def bad_starts(
    planted: Planted,
    server: AclServer,
    env: dict[str, str],
    settings: PostroomSettings,
    outputs: Outputs,
) -> None:
    """A wrong password, and the right one to a server that is down: the start-up errors."""
    wrong_url = f"redis://:{planted.wrong_password}@{server.address}/0"
    for args in (["worker"], ["failed", "message-delivery"]):
        done = cli({**env, "REDIS_URL": wrong_url}, *args)
        assert done.returncode == 2 and "REDIS_URL: Redis at redis://127.0.0.1:" in done.stderr
        outputs.add(f"start-up error, wrong password: {' '.join(args)}", done.stdout + done.stderr)
    invalid = {
        "REDIS_URL": f"redix://:{planted.redis_password}@{server.address}/0",
        "POSTROOM_ADMIN_TOKEN": planted.short_token,
    }
    for name, value in invalid.items():
        done = cli({**env, name: value}, "worker")
        assert done.returncode == 2 and f"{name}: " in done.stderr, done.stderr
        outputs.add(f"start-up error, invalid {name}", done.stdout + done.stderr)
    down_url = f"redis://:{planted.redis_password}@127.0.0.1:{free_port()}/0"
    done = cli({**env, "REDIS_URL": down_url}, "stats")
    assert done.returncode == 2 and "cannot reach Redis at redis://127.0.0.1:" in done.stderr
    outputs.add("start-up error, Redis down: stats", done.stdout + done.stderr)
    # The admin API when its Redis goes away: a 503, and a warning in its log.
    app = create_admin_app(settings=settings)
    async with app.router.lifespan_context(app):
        server.stop()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://admin") as api:
                auth = {"Authorization": f"Bearer {planted.admin_token}"}
                answer = await api.get("/queues", headers=auth)
            assert answer.status_code == 503
            outputs.add("admin API with Redis down", answer.text)
        finally:
            server.start()
    with pytest.raises(Exception) as caught:
        await PostroomClient.connect(
            load_settings(redis_url=wrong_url, key_prefix=settings.key_prefix)
        )
    outputs.add("client error, wrong password", repr(caught.value) + str(caught.value))
    await asyncio.sleep(0)


def test_secrets_url_passwords_are_redacted_wherever_text_is_shown() -> None:
    """The one redaction every output shares (config/redaction.py): a URL's password goes,
    its user, host and path stay; a password holding "@" does not get out either."""
    cases = {
        "redis://:hunter2@cache:6379/0": "redis://:***@cache:6379/0",
        "rediss://postroom:p@ss@cache/0 failed": "rediss://postroom:***@cache/0 failed",
        "GET https://bot:t0k3n@push.example/send": "GET https://bot:***@push.example/send",
        "redis://cache:6379/0 and user@example.com": "redis://cache:6379/0 and user@example.com",
        "amqp://a:b@mq/ and postgresql://u:v@db/x": "amqp://a:***@mq/ and postgresql://u:***@db/x",
    }
    assert {text: redact_credentials(text) for text in cases} == cases
    assert mask({"callbackUrl": "https://bot:t0k3n@push.example/send", "count": 2}) == {
        "callbackUrl": "https://bot:***@push.example/send",
        "count": 2,
    }
