"""Payload markers planted in jobs' and events' arguments, quoted by the tasks' own errors,
never come out where payload encryption does not reach: the workers' log lines (DEBUG,
plain and JSON), /metrics, the dead letters' reasons, and (for what masking hides: bodies,
tokens) the admin views and the CLI. The try errors keep the text, sealed, and the admin
tools open them; POSTROOM_LOG_ERROR_DETAILS=true puts a task's own text back in the logs."""

from __future__ import annotations

import logging
import subprocess
import sys
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import tests.leaky_tasks as leaky
from config.queues import QueueName
from config.settings import PostroomSettings, load_settings
from tests.admin.conftest import AUTH, TOKEN
from tests.conftest import ROOT, eventually, running_worker, worker_env
from tests.events.rabbitmq_support import consuming_here, rabbit_settings
from tests.servers.processes import free_port
from tests.servers.rabbitmq import Broker
from tests.test_payload_encryption import new_key, with_keys
from tests.test_processes import logged_worker, terminate
from workers.client import JobFailedError, PostroomClient
from workers.error_text import WITHHELD
from workers.errors import PayloadValidationError
from workers.events import EventHandlers, RabbitMQEventBus, event_bus
from workers.events.handlers import EventHandlersFailed
from workers.events.queued import QueuedEventBus
from workers.observe.logs import JsonFormatter, PlainFormatter
from workers.ops.admin import create_admin_app
from workers.registry import JobRequest
from workers.store.job_status import JobState

DELIVERY = "/queues/message-delivery"


@dataclass(frozen=True)
class Markers:
    """A contact whose every field is unique to the run, so a find is never a chance."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def phone(self) -> str:
        return f"+1555-{self.tag}-phone"

    @property
    def email(self) -> str:
        return f"mail-{self.tag}@example.test"

    @property
    def refused_phone(self) -> str:
        """A number the task's model refuses (not international)."""
        return f"0555-{self.tag}-local"

    @property
    def content(self) -> str:
        return f"body-{self.tag}"

    @property
    def device_token(self) -> str:
        return f"device-token-{self.tag}"

    def contact(self, **changed: str) -> dict[str, str]:
        fields = {
            "phone": self.phone,
            "email": self.email,
            "content": self.content,
            "deviceToken": self.device_token,
        }
        return {**fields, **changed}

    def every(self) -> dict[str, str]:
        return {
            "phone": self.phone,
            "refused phone": self.refused_phone,
            "e-mail": self.email,
            "body": self.content,
            "device token": self.device_token,
        }

    def masked(self) -> dict[str, str]:
        """What masking hides in a payload, so in an error's text shown with it too."""
        return {"body": self.content, "device token": self.device_token}

    def found(self, text: str, which: dict[str, str] | None = None) -> list[str]:
        return [kind for kind, marker in (which or self.every()).items() if marker in text]


@pytest.fixture
def markers() -> Markers:
    return Markers()


@pytest.fixture
def sealed(settings: PostroomSettings) -> PostroomSettings:
    return with_keys(settings, {"k1": new_key()}, "k1")


def contact(markers: Markers) -> leaky.Contact:
    return leaky.Contact.model_validate(markers.contact())


def cli(settings: PostroomSettings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "workers", *args],
        cwd=ROOT,
        env=worker_env(settings, POSTROOM_TASK_MODULES="tests.leaky_tasks"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def dead_lettered(client: PostroomClient, job_id: str) -> None:
    async def dead() -> bool:
        info = await client.job_info(job_id)
        return info is not None and info.state is JobState.DEAD_LETTERED

    await eventually(dead, f"job {job_id} is dead-lettered")


@pytest.mark.timeout(300)
async def test_payload_encryption_keeps_what_tasks_errors_quote_out_of_logs_metrics_and_views(
    sealed: PostroomSettings, markers: Markers, tmp_path: Path
) -> None:
    """A real worker (DEBUG) runs jobs whose errors quote their payloads: a task's own
    error, retried then dead-lettered; a pydantic error of its own; arguments its model
    refuses; a provider's 429; an event handler's failure on the queued bus."""
    log = tmp_path / "worker.log"
    port = free_port()
    worker = logged_worker(
        sealed,
        log,
        POSTROOM_TASK_MODULES="tests.leaky_tasks",
        POSTROOM_LOG_LEVEL="DEBUG",
        POSTROOM_METRICS_PORT=str(port),
        POSTROOM_MAX_RATE_LIMITED="1",
        POSTROOM_QUEUES__MESSAGE_NOTIFICATION__MAX_TRIES="1",
    )
    try:
        async with await PostroomClient.connect(sealed) as client:
            refused = markers.contact(phone=markers.refused_phone)
            jobs = {
                "bad_phone": await client.enqueue(leaky.bad_phone.call(contact(markers))),
                "validates": await client.enqueue(leaky.validates.call(contact(markers))),
                "takes": await client.enqueue(JobRequest(leaky.takes, {"contact": refused})),
                "limited": await client.enqueue(leaky.limited.call(contact(markers))),
            }
            event = leaky.ContactAdded(phone=markers.phone, content=markers.content)
            await QueuedEventBus(client).publish(event)
            for handle in jobs.values():
                await dead_lettered(client, handle.job_id)
            await dead_lettered(client, event.id)
            with pytest.raises(JobFailedError) as failed:
                await jobs["bad_phone"].result(timeout=30)
            # The enqueueing client opens the try's error: only what it passed itself.
            assert markers.phone in str(failed.value)
            async with httpx.AsyncClient() as http:
                metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            views = await admin_views(sealed, [h.job_id for h in jobs.values()])
    finally:
        terminate(worker)
    views["CLI failed --traceback"] = cli(sealed, "failed", "message-delivery", "--traceback")
    views["CLI job"] = cli(sealed, "job", jobs["bad_phone"].job_id, "--output", "json")
    lines = log.read_text()

    assert markers.found(lines) == []
    assert markers.found(metrics) == [] and "postroom_jobs_dead_lettered" in metrics
    assert {where: markers.found(text, markers.masked()) for where, text in views.items()} == {
        where: [] for where in views
    }
    # What the lines say instead: the type, a pointer to the sealed try error, the fields.
    failed_lines = [line for line in lines.splitlines() if "job failed" in line]
    assert f"(ValueError: {WITHHELD}); try 1/2" in failed_lines[0]
    assert f"job_id={jobs['bad_phone'].job_id}" in failed_lines[0]
    assert "count: Input should be a valid integer" in lines
    assert "phone: invalid (value_error)" in lines  # the validator's own text is not there
    assert "invalid payload for task 'tests.leaky.takes': contact.phone: invalid" in lines
    assert "reason rate-limited" in lines and "deferred" in lines
    assert "tests.leaky_tasks.greet: RuntimeError" in lines
    # The admin tools, holding the keys, open the try error: the phone is there, the body not.
    letter = views[f"admin API GET {DELIVERY}/failed/{jobs['bad_phone'].job_id}"]
    assert f"bad phone {markers.phone} <{markers.email}>: *** (***)" in letter


async def admin_views(settings: PostroomSettings, job_ids: list[str]) -> dict[str, str]:
    """The dead letters and jobs as the admin API shows them; every letter's reason is one
    of the documented words."""
    app = create_admin_app(settings=settings, token=TOKEN)
    paths = [f"{DELIVERY}/failed", f"{DELIVERY}/jobs?state=dead-lettered"]
    paths += [f"{DELIVERY}/failed/{job_id}" for job_id in job_ids]
    paths += [f"/jobs/{job_id}" for job_id in job_ids]
    shown: dict[str, str] = {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as api:
            for path in paths:
                answer = await api.get(path, headers=AUTH)
                assert answer.status_code == 200, (path, answer.text)
                shown[f"admin API GET {path}"] = answer.text
            listing = (await api.get(f"{DELIVERY}/failed", headers=AUTH)).json()
    reasons = {item["reason"] for item in listing["items"]}
    assert reasons == {"max-tries", "permanent", "rate-limited"}
    return shown


@pytest.mark.parametrize(
    ("keys", "details", "logged"),
    [
        (True, None, False),  # sealed: a task's own text stays with the try error
        (True, "true", True),  # an operator asked for it
        (False, None, True),  # nothing sealed: logged as before, but what masking hides
    ],
    ids=["sealed", "sealed-details-on", "not-sealed"],
)
async def test_payload_encryption_log_error_details_setting_decides_what_a_line_quotes(
    settings: PostroomSettings,
    markers: Markers,
    caplog: pytest.LogCaptureFixture,
    keys: bool,
    details: str | None,
    logged: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    chosen = with_keys(settings, {"k1": new_key()}, "k1") if keys else settings
    if details is not None:
        chosen = chosen.model_copy(update={"log_error_details": details == "true"})
    worker = running_worker(chosen, queues=[QueueName.DELIVERY])
    async with await PostroomClient.connect(chosen) as client, worker:
        job = await client.enqueue(leaky.bad_phone.call(contact(markers)))
        await dead_lettered(client, job.job_id)
    text = "".join(
        formatter.format(record)
        for record in caplog.records
        for formatter in (PlainFormatter(), JsonFormatter())
    )
    assert markers.found(text, markers.masked()) == []
    assert (markers.phone in text) is logged and (markers.email in text) is logged
    assert (WITHHELD in text) is not logged
    if logged:
        assert f"bad phone {markers.phone} <{markers.email}>: *** (***)" in text


async def test_payload_encryption_an_event_handlers_failure_on_the_memory_bus_is_logged_by_type(
    sealed: PostroomSettings, markers: Markers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with await PostroomClient.connect(sealed) as client:
        bus = event_bus(sealed, client)
        event = leaky.ContactAdded(phone=markers.phone, content=markers.content)
        with pytest.raises(EventHandlersFailed) as failed:
            await bus.publish(event)
    assert markers.phone in str(failed.value)  # the publisher's own event, raised to it
    assert markers.found(caplog.text) == []
    assert f"greet failed on event {event.type} {event.id}: RuntimeError: {WITHHELD}" in (
        caplog.text
    )


async def test_payload_encryption_a_rabbitmq_event_dead_letter_and_lines_quote_no_marker(
    settings: PostroomSettings,
    rabbitmq: Broker,
    markers: Markers,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    rabbit = with_keys(rabbit_settings(settings, rabbitmq), {"k1": new_key()}, "k1")
    registry = EventHandlers()
    registry.on(leaky.ContactAdded)(leaky.greet)
    app = create_admin_app(settings=rabbit, token=TOKEN)
    event = leaky.ContactAdded(phone=markers.phone, content=markers.content)
    async with (
        await PostroomClient.connect(rabbit) as client,
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://admin", headers=AUTH
        ) as api,
        consuming_here(rabbit, client, registry, "greeters"),
    ):
        bus = RabbitMQEventBus(str(rabbit.rabbitmq_url), rabbit.event_exchange)
        try:
            await bus.publish(event)
        finally:
            await bus.close()

        async def arrived() -> bool:
            answer = await api.get("/events/greeters/failed")
            return answer.status_code == 200 and answer.json()["total"] >= 1

        await eventually(arrived, "the event is dead-lettered")
        listing = await api.get("/events/greeters/failed")
    # The postroom lines (aiormq's own DEBUG lines quote the frames it sends, body and all;
    # postroom's logging set-up leaves them out, as every library's but arq's).
    postroom = [r for r in caplog.records if r.name.startswith("workers")]
    assert postroom and markers.found("".join(PlainFormatter().format(r) for r in postroom)) == []
    assert markers.found(listing.text, markers.masked()) == []  # the event shown masked
    [letter] = listing.json()["items"]
    assert markers.found(letter["error"]) == []
    assert "tests.leaky_tasks.greet: RuntimeError" in letter["error"]


def test_payload_encryption_a_refused_payload_names_its_fields_never_its_values(
    markers: Markers,
) -> None:
    """The enqueue-side error, its cause and its traceback (what a web app logs), and the
    worker-side try error of arguments that do not validate: the field, not the value."""
    with pytest.raises(PayloadValidationError) as refused:
        leaky.takes.request({"contact": {"content": markers.content}})
    shown = "".join(traceback.format_exception(refused.value))
    assert "contact.phone: Field required" in str(refused.value)
    assert markers.found(shown) == [] and "input_value" not in shown

    from workers.store.dead_letter import try_error

    try:
        leaky.Reading.model_validate({"count": markers.content, "phone": markers.phone})
    except Exception as exc:
        error = try_error(1, exc)
    assert markers.found(error.message + error.traceback, markers.masked()) == []
    assert "input_value" not in error.traceback
    assert "count: Input should be a valid integer" in error.message
    # A validator's own message is the task's text: kept (sealed) with the try error.
    assert f"no digits in {markers.phone}" in error.message


def test_payload_encryption_the_log_error_details_setting_defaults_to_the_safe_choice(
    settings: PostroomSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.error_details  # nothing sealed: as before
    sealed = with_keys(settings, {"k1": new_key()}, "k1")
    assert not sealed.error_details
    assert sealed.model_copy(update={"log_error_details": True}).error_details
    assert not settings.model_copy(update={"log_error_details": False}).error_details
    off = sealed.model_copy(update={"payload_encryption": False})
    assert off.error_details
    monkeypatch.setenv("POSTROOM_LOG_ERROR_DETAILS", "true")
    assert load_settings(redis_url=settings.redis_url).log_error_details is True


def test_payload_encryption_a_logged_traceback_gives_a_pydantic_errors_fields_only(
    markers: Markers,
) -> None:
    """A traceback logged with `exc_info` (both formats): no local variables, and a pydantic
    error anywhere in its chain without the values it refused."""
    try:
        try:
            leaky.Reading.model_validate({"count": markers.content, "phone": "+1"})
        except ValueError as exc:
            raise RuntimeError("the reading failed") from exc
    except RuntimeError:
        record = logging.LogRecord(
            "workers.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    for formatter in (PlainFormatter(), JsonFormatter()):
        text = formatter.format(record)
        assert "count: Input should be a valid integer" in text and "RuntimeError" in text
        assert markers.found(text) == [] and "input_value" not in text
