"""The batch-message-sending queue: `batch-send` fans one message out to many recipients.

Each recipient gets a `send-message` job on the delivery queue, with the batch's priority and
a deterministic id (`<batch id>:<recipient id>`, also the message id). Chunks of `chunkSize`
recipients are enqueued in one transaction each, together with a checkpoint of how many
recipients are done, and `chunkDelay` ms apart. A batch that is retried or recovered from a
dead worker reads the checkpoint and carries on after the last chunk written: no recipient is
sent to twice. Memory stays bounded by the chunk: only one chunk's jobs exist at a time.
"""

from __future__ import annotations

import asyncio
import math

from config.queues import QueueName
from tasks.message_delivery import send_message
from tasks.notify import render
from tasks.payloads import BatchSend, BatchSent, SendMessage
from workers import Checkpoint, JobContext, Keys, MarkerRule, PostroomClient, marker_rule, task

# The checkpoint outlives the batch's retries and its stay among the dead letters.
CHECKPOINT_EXTRA_SECONDS = 86_400


def checkpoint_key(keys: Keys, batch_id: str, conversation_id: str) -> str:
    """Set with each chunk's jobs, in their partition's slot (one conversation's messages
    share a partition): one transaction writes both."""
    partition = keys.route(send_message.queue, conversation_id)
    return partition.checkpoint(f"batch:{batch_id}")


@marker_rule
def old_checkpoints(key_prefix: str) -> MarkerRule:
    """Before hash tags a checkpoint was `<prefix>:batch:<batch id>:done` (postroom
    migrate-keys moves it: without it a retried batch would send its chunks again)."""
    start, end = f"{key_prefix}:batch:", ":done"

    def rename(old: str) -> str:
        # The layout before hash tags had no partitions: its checkpoints go to the first.
        batch_id = old.removeprefix(start).removesuffix(end)
        return Keys(key_prefix).of(send_message.queue).checkpoint(f"batch:{batch_id}")

    return MarkerRule("batch checkpoint", f"{start}*{end}", rename)


def child_id(batch_id: str, recipient_id: str) -> str:
    """The job id and message id of the batch's message to one recipient."""
    return f"{batch_id}:{recipient_id}"


@task(queue=QueueName.BATCH, name="batch-send")
async def batch_send(ctx: JobContext, batch: BatchSend) -> BatchSent:
    settings = ctx["settings"]
    batch_id = ctx["job_id"]
    ttl_ms = int((settings.dead_letter_retention + CHECKPOINT_EXTRA_SECONDS) * 1000)
    client = PostroomClient(ctx["redis"], settings, metrics=ctx["runtime"].metrics.enqueue)
    priority = ctx["priority"]
    conversation_id = batch.conversation_id or f"broadcast:{batch_id}"
    key = checkpoint_key(client.keys, batch_id, conversation_id)
    total = len(batch.recipient_ids)
    chunks = math.ceil(total / batch.chunk_size)
    done = int(await ctx["redis"].get(key) or 0)
    enqueued = 0
    for start in range(done, total, batch.chunk_size):
        if start > done and batch.chunk_delay:
            await asyncio.sleep(batch.chunk_delay / 1000)
        end = min(start + batch.chunk_size, total)
        requests = []
        for recipient in batch.recipient_ids[start:end]:
            message_id = child_id(batch_id, recipient)
            content = render(
                batch.content, batch.recipient_variables.get(recipient, {}), name="content"
            )
            message = SendMessage(
                message_id=message_id,
                sender_id=batch.sender_id,
                recipient_id=recipient,
                conversation_id=conversation_id,
                content=content,
                requires_encryption=batch.requires_encryption,
                created_at=batch.created_at,
            )
            requests.append(
                send_message.call(message).with_options(job_id=message_id, priority=priority)
            )
        handles = await client.enqueue_many(requests, checkpoint=Checkpoint(key, str(end), ttl_ms))
        enqueued += sum(handle.created for handle in handles)
        chunk = math.ceil(end / batch.chunk_size)
        await ctx["progress"](
            current_step=chunk,
            total_steps=chunks,
            step=f"chunk {chunk} of {chunks}",
            data={"recipients": end, "of": total},
        )
    return BatchSent(batch_id=batch_id, recipients=total, enqueued=enqueued, chunks=chunks)
