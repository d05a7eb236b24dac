"""The queued event bus with `postroom worker` in its own process, as deployed."""

from __future__ import annotations

from config.settings import PostroomSettings
from tests.conftest import eventually, postroom_worker
from tests.events.handlers import Followed
from tests.sample_tasks import echo
from tests.webapp.conftest import stop
from workers.client import PostroomClient
from workers.events import QueuedEventBus, event_bus


async def test_event_published_by_the_app_is_handled_by_a_worker_process(
    settings: PostroomSettings, client: PostroomClient
) -> None:
    bus = event_bus(settings.model_copy(update={"use_queue_event_bus": True}), client)
    assert isinstance(bus, QueuedEventBus)
    event = Followed(text="from another process")
    assert await bus.publish(event) is True
    worker = postroom_worker(
        settings, POSTROOM_TASK_MODULES="tests.sample_tasks,tests.events.handlers"
    )
    try:
        # The worker's handler enqueued the follow-up job, which the worker then ran.
        follow_up = client.job(f"follow-up:{event.id}", echo)

        async def enqueued() -> bool:
            return await follow_up.info() is not None

        await eventually(enqueued, "the worker's handler enqueued its follow-up job")
        assert (await follow_up.result(timeout=60))["text"] == "from another process"
        assert await bus.publish(event) is False
    finally:
        stop(worker)
