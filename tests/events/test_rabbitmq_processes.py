"""The RabbitMQ event bus as deployed: `postroom events --transport rabbitmq` consumer
processes of two handler groups, a publisher in this process, and the session's broker."""

from __future__ import annotations

import asyncio
import signal

from config.settings import PostroomSettings
from tests.conftest import eventually
from tests.events.rabbitmq_events import Audited, Shipped, Stuck, record_key
from tests.events.rabbitmq_support import (
    consumer_process,
    queue_state,
    rabbit_settings,
    recorded,
    stop_process,
    wait_consuming,
)
from tests.servers.rabbitmq import Broker
from workers.client import PostroomClient
from workers.events import RabbitMQEventBus, event_bus


async def test_rabbitmq_event_is_handled_once_by_each_of_two_groups_in_two_processes(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    alpha = consumer_process(rabbit, "alpha", "tests.events.rabbitmq_alpha")
    beta = consumer_process(rabbit, "beta", "tests.events.rabbitmq_beta")
    bus = event_bus(rabbit, client)
    assert isinstance(bus, RabbitMQEventBus)
    try:
        await wait_consuming(rabbit, "alpha")
        await wait_consuming(rabbit, "beta")
        shipped, audited = Shipped(order_id="o-1"), Audited(order_id="o-1")
        assert await bus.publish_all([shipped, audited]) == [True, True]
        # The same event again (a retried request): no second message.
        assert await bus.publish(shipped) is False

        async def both_handled() -> bool:
            return all(
                [
                    await recorded(client, "alpha", "shipped"),
                    await recorded(client, "beta", "shipped"),
                    await recorded(client, "beta", "audited"),
                ]
            )

        await eventually(both_handled, "both groups handled the event")
        assert stop_process(alpha) == 0
        assert stop_process(beta) == 0
        # Each group handled it once; alpha's queue is not bound to the type only beta takes.
        assert await recorded(client, "alpha", "shipped") == [shipped.id]
        assert await recorded(client, "beta", "shipped") == [shipped.id]
        assert await recorded(client, "beta", "audited") == [audited.id]
        assert await recorded(client, "alpha", "audited") == []
        for group in ("alpha", "beta"):
            # Nothing left behind: every delivery was acked.
            messages, _ = await queue_state(rabbitmq.url, f"{rabbit.event_exchange}.{group}")
            assert messages == 0
    finally:
        stop_process(alpha)
        stop_process(beta)
        await bus.close()


async def test_rabbitmq_consumer_sigkilled_mid_handler_gets_the_event_redelivered(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    first = consumer_process(rabbit, "stuck", "tests.events.rabbitmq_stuck")
    second = None
    bus = RabbitMQEventBus(rabbit.rabbitmq_url or "", rabbit.event_exchange)
    try:
        await wait_consuming(rabbit, "stuck")
        event = Stuck()
        assert await bus.publish(event) is True

        async def hanging() -> bool:
            return bool(await recorded(client, "stuck", "second-started"))

        await eventually(hanging, "the second handler is running")
        first.send_signal(signal.SIGKILL)
        assert first.wait() == -signal.SIGKILL
        second = consumer_process(rabbit, "stuck", "tests.events.rabbitmq_stuck")

        async def done() -> bool:
            return bool(await recorded(client, "stuck", "second-done"))

        await eventually(done, "the event was redelivered to the new consumer and handled")
        assert await recorded(client, "stuck", "second-started") == [event.id, event.id]
        # The handler that had succeeded before the kill did not run again.
        assert await recorded(client, "stuck", "first") == [event.id]
        assert stop_process(second) == 0
    finally:
        stop_process(first)
        if second is not None:
            stop_process(second)
        await bus.close()


async def test_rabbitmq_broker_restart_mid_stream_loses_no_confirmed_event(
    settings: PostroomSettings, client: PostroomClient, restartable_rabbitmq: Broker
) -> None:
    """alpha consumes throughout (it reconnects); beta's consumer is stopped, so what it is
    sent sits in its queue across the restart, and is handled once beta starts again."""
    broker = restartable_rabbitmq
    assert broker.server is not None
    rabbit = rabbit_settings(settings, broker, event_publish_timeout=120)
    alpha = consumer_process(rabbit, "alpha", "tests.events.rabbitmq_alpha")
    beta = consumer_process(rabbit, "beta", "tests.events.rabbitmq_beta")
    bus = event_bus(rabbit)
    assert isinstance(bus, RabbitMQEventBus)
    confirmed: list[str] = []
    restarted = asyncio.Event()
    after_restart: list[str] = []

    async def publish(count: int) -> None:
        for n in range(count):
            event = Shipped(order_id=f"o-{n}")
            assert await bus.publish(event) is True  # returns only once the broker has it
            confirmed.append(event.id)
            if restarted.is_set():
                after_restart.append(event.id)
            await asyncio.sleep(0)

    async def handled_by(group: str) -> bool:
        return len(set(await recorded(client, group, "shipped"))) >= len(confirmed)

    try:
        await wait_consuming(rabbit, "alpha")
        await wait_consuming(rabbit, "beta")
        assert stop_process(beta) == 0  # its queue stays, bound, and fills up
        publisher = asyncio.create_task(publish(200))

        async def some_published() -> bool:
            assert not publisher.done() or publisher.exception() is None
            return len(confirmed) >= 50

        await eventually(some_published, "50 events were confirmed")
        await asyncio.to_thread(broker.server.restart)
        restarted.set()
        await publisher
        assert after_restart, "the publisher carried on after the restart"
        await eventually(lambda: handled_by("alpha"), "alpha handled every event", within=60)
        beta = consumer_process(rabbit, "beta", "tests.events.rabbitmq_beta")
        await eventually(lambda: handled_by("beta"), "beta handled every event", within=60)
        for group in ("alpha", "beta"):
            handled = await recorded(client, group, "shipped")
            assert set(handled) == set(confirmed)
            # A redelivery after the restart skipped what its handler had done.
            assert len(handled) == len(confirmed)
        assert stop_process(alpha) == 0
        assert stop_process(beta) == 0
    finally:
        stop_process(alpha)
        stop_process(beta)
        await bus.close()


async def test_rabbitmq_consumer_shutdown_finishes_a_running_event_or_requeues_it(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    gate = record_key(settings.key_prefix, "gated", "gate")
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    queue = f"{rabbit.event_exchange}.gated"

    async def started(count: int) -> bool:
        return len(await recorded(client, "gated", "started")) >= count

    # SIGTERM while it runs: it is given the grace period, finishes, and is acked.
    consumer = consumer_process(rabbit, "gated", "tests.events.rabbitmq_gated")
    try:
        await wait_consuming(rabbit, "gated")
        finished = Stuck()
        await bus.publish(finished)
        await eventually(lambda: started(1), "the handler is running")
        consumer.send_signal(signal.SIGTERM)
        await client.redis.set(gate, 1)
        assert await asyncio.to_thread(consumer.wait) == 0
        assert await recorded(client, "gated", "done") == [finished.id]
        assert await queue_state(rabbitmq.url, queue) == (0, 0)
        await client.redis.delete(gate)
        # Past a short grace it is cancelled unacked, and the broker keeps it for the next one.
        consumer = consumer_process(
            rabbit, "gated", "tests.events.rabbitmq_gated", POSTROOM_SHUTDOWN_GRACE="0.2"
        )
        await wait_consuming(rabbit, "gated")
        requeued = Stuck()
        await bus.publish(requeued)
        await eventually(lambda: started(2), "the second event's handler is running")
        consumer.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(consumer.wait) == 0
        assert await queue_state(rabbitmq.url, queue) == (1, 0)
        await client.redis.set(gate, 1)
        consumer = consumer_process(rabbit, "gated", "tests.events.rabbitmq_gated")

        async def done() -> bool:
            return len(await recorded(client, "gated", "done")) == 2

        await eventually(done, "the requeued event was handled by the next consumer")
        assert await recorded(client, "gated", "done") == [finished.id, requeued.id]
        assert stop_process(consumer) == 0
    finally:
        stop_process(consumer)
        await bus.close()
