"""batch-send through real workers: templates, chunks, progress, and exactly-once on resume."""

from __future__ import annotations

import signal

import pytest

from config.queues import QueueName
from config.settings import PostroomSettings
from tasks.batch_sending import batch_send, checkpoint_key, child_id
from tasks.payloads import BatchSend
from tests.conftest import eventually, postroom_worker, running_worker
from tests.tasks.conftest import inbox, with_settings
from workers.client import PostroomClient
from workers.errors import PayloadValidationError
from workers.runner.supervisor import Supervisor
from workers.store.priority import Priority


async def test_a_batch_reaches_each_recipient_once_with_their_variables(
    task_settings: PostroomSettings, task_client: PostroomClient, worker: Supervisor
) -> None:
    recipients = [f"user-{n}" for n in range(30)]
    batch = BatchSend.model_validate(
        {
            "senderId": "admin",
            "recipientIds": recipients,
            "content": "Hello $name, the office closes early today",
            "recipientVariables": {r: {"name": r.upper()} for r in recipients},
            "chunkSize": 7,
            "chunkDelay": 10,
        }
    )
    async with inbox(task_settings) as box:
        handle = await task_client.enqueue(batch_send.call(batch))
        sent = await handle.result(timeout=30)
        await box.wait_for(len(recipients))

    assert (sent.recipients, sent.enqueued, sent.chunks) == (30, 30, 5)
    assert {user: [e["content"] for e in box.of(user)] for user in recipients} == {
        user: [f"Hello {user.upper()}, the office closes early today"] for user in recipients
    }
    assert {e["messageId"] for user in recipients for e in box.of(user)} == {
        f"{handle.job_id}:{user}" for user in recipients
    }
    info = await handle.info()
    assert info is not None and info.progress is not None
    assert info.progress.percentage == 100 and info.progress.step == "chunk 5 of 5"


async def test_a_recipient_without_its_template_variables_is_refused_at_enqueue(
    task_client: PostroomClient,
) -> None:
    payload = {
        "senderId": "admin",
        "recipientIds": ["ann", "ben"],
        "content": "Hi $name",
        "recipientVariables": {"ann": {"name": "Ann"}},
    }
    with pytest.raises(PayloadValidationError, match=r"recipientVariables\['ben'\] lacks name"):
        await task_client.enqueue_payload("batch-send", {"batch": payload})


# The batch only writes to Redis: one database backend is enough.
@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("priority", [Priority.URGENT, Priority.LOW])
async def test_a_batchs_messages_have_the_batchs_priority(
    task_settings: PostroomSettings, task_client: PostroomClient, priority: Priority
) -> None:
    """The batch reads its priority from its context (no delivery worker runs: the messages
    stay queued to be looked at)."""
    batch = BatchSend(sender_id="admin", recipient_ids=["ann", "ben"], content="Hi")
    async with running_worker(task_settings, queues=[QueueName.BATCH]):
        handle = await task_client.enqueue(batch_send.call(batch), priority=priority)
        await handle.result(timeout=30)
    children = [await task_client.job_info(child_id(handle.job_id, r)) for r in ("ann", "ben")]
    assert [info.priority if info else None for info in children] == [priority, priority]


# The batch only writes to Redis: one database backend is enough.
@pytest.mark.parametrize("backend_url", ["sqlite"], indirect=True)
async def test_a_batch_of_10000_killed_midway_resumes_and_sends_exactly_once(
    task_settings: PostroomSettings, task_client: PostroomClient
) -> None:
    """The batch's worker is killed with SIGKILL a quarter of the way through; another takes
    the job over once the lease lapses and carries on after the last chunk written.

    No delivery worker runs, so the delivery queue shows exactly what the batch sent.
    """
    settings = with_settings(task_settings, lease_seconds=1.0)
    recipients = [f"r{n:05d}" for n in range(10_000)]
    batch = BatchSend(
        sender_id="admin",
        recipient_ids=recipients,
        content="Scheduled maintenance tonight",
        chunk_size=500,
        chunk_delay=100,
    )
    batch_worker = postroom_worker(
        settings,
        POSTROOM_TASK_MODULES="tasks",
        POSTROOM_WORKER_QUEUES=QueueName.BATCH.value,
        POSTROOM_LEASE_SECONDS="1",
    )
    try:
        handle = await task_client.enqueue(batch_send.call(batch))

        async def a_quarter_done() -> bool:
            info = await handle.info()
            percentage = info.progress.percentage if info and info.progress else None
            return percentage is not None and percentage >= 25

        await eventually(a_quarter_done, "a quarter of the batch is enqueued")
        batch_worker.send_signal(signal.SIGKILL)
        batch_worker.wait()
    finally:
        batch_worker.kill()
        batch_worker.wait()
    checkpoint = await task_client.redis.get(
        checkpoint_key(task_client.keys, handle.job_id, f"broadcast:{handle.job_id}")
    )
    assert checkpoint is not None
    written_before_kill = int(checkpoint)
    async with running_worker(settings, queues=[QueueName.BATCH]):
        resumed = await handle.result(timeout=60)

    assert 0 < written_before_kill < len(recipients) and written_before_kill % 500 == 0
    # The second try wrote exactly the chunks the first had not: none twice, none skipped.
    assert resumed.enqueued == len(recipients) - written_before_kill
    queued = await task_client.redis.zrange(task_client.keys.of(QueueName.DELIVERY).queue, 0, -1)
    assert sorted(job_id.decode() for job_id in queued) == [
        child_id(handle.job_id, recipient) for recipient in recipients
    ]
