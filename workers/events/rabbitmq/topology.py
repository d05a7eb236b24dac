"""What the RabbitMQ transport declares, by name, and the headers its messages carry.

- `<exchange>`: durable topic exchange; an event's routing key is its type.
- `<exchange>.<group>`: a handler group's durable queue, bound to its handlers' event types.
- `<exchange>.<group>.retry.<ms>`: a wait queue per nominal backoff delay; a failed event
  sits there with a per-message TTL (its jittered delay), then is dead-lettered back to the
  group's queue through the default exchange. A queue per nominal delay keeps the messages
  in one queue close in TTL: RabbitMQ expires only a queue's head, so an event can wait up to
  its queue's nominal delay, never longer.
- `<exchange>.<group>.dead`: the group's dead letters, kept until retried or purged.

Declarations are idempotent, so publishers, consumers and the admin tools each declare
what they use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

# Headers postroom sets (a consumer in another language may read them too).
TRY_HEADER = "x-postroom-try"  # the delivery's try, from 1
REASON_HEADER = "x-postroom-reason"  # why it was dead-lettered (MalformedEvent.REASONS, ...)
ERROR_HEADER = "x-postroom-error"  # the error, in words
GROUP_HEADER = "x-postroom-group"
DEAD_AT_HEADER = "x-postroom-dead-at"  # milliseconds since the epoch
ROUTING_KEY_HEADER = "x-postroom-routing-key"  # the routing key it first came with
# W3C trace context: a publisher's tracing sets it, the consumer hands it to its handlers.
TRACEPARENT_HEADER = "traceparent"
# What RabbitMQ itself adds on dead-lettering; not copied when postroom republishes.
BROKER_HEADERS = (
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
)
# Reasons besides MalformedEvent's: retries ran out; every failing handler refused it.
EXHAUSTED = "exhausted"
REJECTED = "rejected"


@dataclass(frozen=True)
class GroupTopology:
    """The names of one handler group's queues under `exchange`."""

    exchange: str
    group: str

    @property
    def queue(self) -> str:
        return f"{self.exchange}.{self.group}"

    @property
    def dead(self) -> str:
        return f"{self.queue}.dead"

    def wait(self, nominal_ms: int) -> str:
        return f"{self.queue}.retry.{nominal_ms}"


async def declare_exchange(channel: AbstractChannel, name: str) -> AbstractExchange:
    from aio_pika import ExchangeType

    return await channel.declare_exchange(name, ExchangeType.TOPIC, durable=True)


async def declare_group_queue(channel: AbstractChannel, names: GroupTopology) -> AbstractQueue:
    return await channel.declare_queue(names.queue, durable=True)


async def declare_dead_queue(channel: AbstractChannel, names: GroupTopology) -> AbstractQueue:
    return await channel.declare_queue(names.dead, durable=True)


async def declare_wait_queue(
    channel: AbstractChannel, names: GroupTopology, nominal_ms: int
) -> AbstractQueue:
    """The wait queue whose expired messages go back to the group's queue."""
    return await channel.declare_queue(
        names.wait(nominal_ms),
        durable=True,
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.queue,
        },
    )
