"""The admin API against its own OpenAPI schema: schemathesis generates requests for every
operation and checks each answer (status codes, bodies and headers as the schema says, no
5xx), on a real uvicorn over a real Redis holding real jobs.

Bounded and repeatable: few examples per operation, derandomized, no example database.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import checks

from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.admin.conftest import TOKEN
from tests.admin.tasks import note
from tests.conftest import eventually, running_worker
from workers.client import PostroomClient
from workers.connection.redis_server import EmbeddedRedis
from workers.ops.admin import create_admin_app

# A job the seed dead-letters; every generated `job_id` is this one, so the job and
# dead-letter operations answer about a real job, not only with 404s.
DEAD_JOB = f"contract-{uuid.uuid4().hex[:10]}"


async def _seed(settings: PostroomSettings) -> None:
    """Jobs in most states: queued, deferred, complete, dead-lettered."""
    async with await PostroomClient.connect(settings) as client:
        await client.enqueue_payload("admin.refuse", note(1), job_id=DEAD_JOB)
        await client.enqueue_payload("admin.greet", note(2))
        async with running_worker(settings, queues=[QueueName.DELIVERY]):

            async def finished() -> bool:
                stats = await client.queue_stats(QueueName.DELIVERY)
                return stats.completed == 1 and stats.dead_lettered_now == 1

            await eventually(finished, "the seed jobs finish")
        await client.enqueue_payload("admin.greet", note(3))
        await client.enqueue_payload("admin.greet", note(4), delay=3600)


@pytest.fixture(scope="module")
def admin_server(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The admin app served by uvicorn in a thread (schemathesis calls it synchronously),
    over jobs of its own key prefix; one server for every operation's test."""
    settings = load_settings(
        redis_url=redis_server.url,
        key_prefix=f"test-{uuid.uuid4().hex[:10]}",
        data_dir=tmp_path_factory.mktemp("contract"),
    )
    asyncio.run(_seed(settings))
    app = create_admin_app(settings=settings, token=TOKEN)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None))
    thread = threading.Thread(target=server.run, name="admin-server")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# The schema is static: the app that describes it needs no Redis until a request comes, and
# its defaults (not the environment) are enough to build it at import.
schema = schemathesis.openapi.from_dict(
    create_admin_app(settings=PostroomSettings.model_construct(), token=TOKEN).openapi(),
    # The token of the app's bearer scheme: schemathesis sends it, and checks that a
    # request without it (or with another) is refused.
    config=schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}},
            "parameters": {"job_id": DEAD_JOB},
        }
    ),
)


@schema.parametrize()
@settings(
    max_examples=8,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_its_schema_says(
    case: schemathesis.Case[Any], admin_server: str
) -> None:
    excluded = []
    if case.operation.path == "/jobs" and case.method == "POST":
        # Whether a payload is valid depends on the task it names, which the schema does not
        # spell out per task: a schema-valid body may rightly be a 422.
        excluded.append(checks.positive_data_acceptance)
    if case.operation.path == "/health/ready":
        # No worker serves the contract test's queues: not ready, a documented 503.
        excluded.append(checks.not_a_server_error)
    case.call_and_validate(base_url=admin_server, excluded_checks=excluded)
