"""The RabbitMQ event dead letters through the admin API and the `postroom event-*`
commands: listed (data masked), retried, removed and purged, as a queue's failed jobs."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from typing import Any, Literal

import httpx
import orjson

from config.settings import PostroomSettings
from tests.admin.conftest import AUTH, TOKEN
from tests.conftest import ROOT, eventually, worker_env
from tests.events.rabbitmq_support import consuming_here, rabbit_settings
from tests.servers.rabbitmq import Broker
from workers.client import PostroomClient
from workers.errors import PermanentError
from workers.events import DomainEvent, EventHandlers, RabbitMQEventBus
from workers.ops.admin import create_admin_app

registry = EventHandlers()
handled: Counter[str] = Counter()
welcome: set[str] = set()


class Refunded(DomainEvent):
    type: Literal["tests.rabbitmq.refunded"] = "tests.rabbitmq.refunded"
    content: str  # a body field: masked where shown


@registry.on(Refunded)
async def refund(event: Refunded) -> None:
    if event.id not in welcome:
        raise PermanentError("refunds are closed")
    handled[event.id] += 1


async def _dead(client: httpx.AsyncClient, group: str, count: int) -> list[dict[str, Any]]:
    async def arrived() -> bool:
        answer = await client.get(f"/events/{group}/failed")
        return answer.status_code == 200 and answer.json()["total"] >= count

    await eventually(arrived, f"{count} event dead letter(s) in {group}")
    page = (await client.get(f"/events/{group}/failed")).json()
    items: list[dict[str, Any]] = page["items"]
    return items


async def test_rabbitmq_event_dead_letters_are_listed_retried_and_purged_by_the_admin_api(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    app = create_admin_app(settings=rabbit, token=TOKEN)
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://admin", headers=AUTH) as api,
        consuming_here(rabbit, client, registry, "refunds"),
    ):
        assert (await api.get("/events/groups")).json() == {"enabled": True, "groups": ["refunds"]}
        events = [Refunded(content=f"secret text {n}") for n in range(3)]
        await bus.publish_all(events)
        items = await _dead(api, "refunds", 3)
        # In the order they died: each took its own retries, so not always the published one.
        assert sorted(item["id"] for item in items) == sorted(e.id for e in events)
        assert {item["reason"] for item in items} == {"rejected"}
        assert {item["event"]["data"]["content"] for item in items} == {"***"}
        assert "secret" not in (await api.get(f"/events/refunds/failed/{events[0].id}")).text
        # One retried (now welcome), one removed, the last purged.
        welcome.add(events[0].id)
        retried = await api.post(f"/events/refunds/failed/{events[0].id}/retry")
        assert retried.json() == {"retried": 1}

        async def refunded() -> bool:
            return handled[events[0].id] == 1

        await eventually(refunded, "the retried event was handled")
        removed = await api.delete(f"/events/refunds/failed/{events[1].id}")
        assert removed.json() == {"removed": 1}
        assert (await api.delete(f"/events/refunds/failed/{events[1].id}")).status_code == 404
        assert [i["id"] for i in (await api.get("/events/refunds/failed")).json()["items"]] == [
            events[2].id
        ]
        assert (await api.delete("/events/refunds/failed")).json() == {"removed": 1}
        assert (await api.get("/events/refunds/failed")).json()["total"] == 0
        unknown = await api.get("/events/nobody/failed")
        assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
        # Each change is in the audit trail, as a queue's dead letters' are.
        trail = (await api.get("/audit", params={"limit": 20})).json()["items"]
        done = [
            (r["action"], r["job_ids"], r["count"], r["outcome"], r["detail"].get("group"))
            for r in trail
            if r["action"].startswith("event-dead-letter.")
        ]
        assert done == [  # newest first
            ("event-dead-letter.purge", [], 1, "ok", "refunds"),
            ("event-dead-letter.remove", [events[1].id], None, "error", "refunds"),
            ("event-dead-letter.remove", [events[1].id], 1, "ok", "refunds"),
            ("event-dead-letter.retry", [events[0].id], 1, "ok", "refunds"),
        ]
    await bus.close()
    # A deployment without RabbitMQ says so.
    plain = create_admin_app(settings=settings, token=TOKEN)
    async with (
        plain.router.lifespan_context(plain),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=plain), base_url="http://admin", headers=AUTH
        ) as api,
    ):
        assert (await api.get("/events/groups")).json() == {"enabled": False, "groups": []}
        answer = await api.get("/events/refunds/failed")
        assert answer.status_code == 409 and "RABBITMQ_URL" in answer.json()["detail"]


async def _postroom(rabbit: PostroomSettings, *args: str) -> tuple[int, str, str]:
    env = worker_env(
        rabbit,
        RABBITMQ_URL=str(rabbit.rabbitmq_url),
        POSTROOM_EVENT_EXCHANGE=rabbit.event_exchange,
        POSTROOM_OPERATOR="carol",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_rabbitmq_event_dead_letters_commands_list_retry_and_purge(
    settings: PostroomSettings, client: PostroomClient, rabbitmq: Broker
) -> None:
    rabbit = rabbit_settings(settings, rabbitmq)
    bus = RabbitMQEventBus(rabbitmq.url, rabbit.event_exchange)
    events = [Refunded(content="hidden") for _ in range(3)]
    async with consuming_here(rabbit, client, registry, "cli-refunds"):
        await bus.publish_all(events)

        async def all_dead() -> bool:
            code, out, _ = await _postroom(rabbit, "event-failed", "cli-refunds", "--json")
            return code == 0 and orjson.loads(out)["total"] == 3

        await eventually(all_dead, "three event dead letters")
        code, out, _ = await _postroom(rabbit, "event-failed", "cli-refunds")
        assert code == 0 and events[0].id in out and "rejected" in out and "hidden" not in out
        code, out, _ = await _postroom(rabbit, "event-groups", "--json")
        assert code == 0 and orjson.loads(out) == ["cli-refunds"]
        welcome.update(e.id for e in events[:2])
        code, out, err = await _postroom(
            rabbit, "event-retry", "cli-refunds", events[0].id, events[1].id, "--json"
        )
        assert (code, orjson.loads(out)) == (0, {"retried": 2}), err

        async def refunded() -> bool:
            return all(handled[e.id] == 1 for e in events[:2])

        await eventually(refunded, "the retried events were handled")
        code, _, err = await _postroom(rabbit, "event-remove", "cli-refunds", "no-such-id")
        assert code == 2 and "0 of 1" in err
        code, out, _ = await _postroom(rabbit, "event-purge", "cli-refunds", "--json")
        assert (code, orjson.loads(out)) == (0, {"removed": 1})
        code, _, err = await _postroom(rabbit, "event-failed", "nobody")
        assert code == 2 and "nobody" in err
        code, out, _ = await _postroom(rabbit, "audit", "--via", "cli", "--json")
        trail = [
            (r["action"], r["actor"], r["count"], r["outcome"], r["detail"].get("group"))
            for r in orjson.loads(out)["items"]
        ]
        assert trail == [
            ("event-dead-letter.purge", "carol", 1, "ok", "cli-refunds"),
            ("event-dead-letter.remove", "carol", 0, "error", "cli-refunds"),
            ("event-dead-letter.retry", "carol", 2, "ok", "cli-refunds"),
        ]
    await bus.close()
