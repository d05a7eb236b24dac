"""`postroom worker --processes N`: N worker processes, each restarted if it crashes (but
not when it exits for a setting to fix: then they all stop)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from config.settings import PostroomSettings
from workers.runner.waiting import sleep_unless

logger = logging.getLogger(__name__)

# A child that ran this long before dying is restarted at once; quicker deaths back off
# (doubling up to the cap) so a crash loop does not spin the machine.
STABLE_AFTER = 30.0
RESTART_DELAYS = (1.0, 30.0)
# A child's exit code for a setting to fix (cli.py): refused credentials at start-up, or for
# all of POSTROOM_REDIS_AUTH_GRACE at run time. Restarting cannot mend it, so the pool stops
# and exits with it, for the orchestrator to see.
CONFIG_ERROR = 2


class ProcessPool:
    """Forks `processes` copies of a one-process worker command and keeps them alive.

    `command.line(i)` is slot i's command line (each child serves its own metrics port).
    """

    def __init__(self, command: ChildCommand, processes: int, env: dict[str, str]) -> None:
        self.command = command
        self.processes = processes
        self.env = env
        self.children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._forward, sig)
        slots = [asyncio.create_task(self._keep_alive(i)) for i in range(self.processes)]
        codes = await asyncio.gather(*slots)
        if CONFIG_ERROR in codes:
            return CONFIG_ERROR
        return 0 if all(code == 0 for code in codes) else 1

    def _forward(self, sig: signal.Signals) -> None:
        """Pass the signal on; each child drains itself (a second signal stops them at once)."""
        self._stopping.set()
        for child in self.children.values():
            if child.returncode is None:
                child.send_signal(sig)

    async def _keep_alive(self, slot: int) -> int:
        delay = RESTART_DELAYS[0]
        while not self._stopping.is_set():
            started = time.monotonic()
            # Its own process group: a terminal's Ctrl-C reaches only this parent, which
            # forwards it once (twice would mean "stop at once" to the child).
            child = await asyncio.create_subprocess_exec(
                *self.command.line(slot), env=self.env, start_new_session=True
            )
            self.children[slot] = child
            if self._stopping.is_set():  # the signal came while this child was starting
                child.send_signal(signal.SIGTERM)
            port = self.command.metrics_port_of(slot)
            metrics = "" if port is None else f", metrics on port {port}"
            logger.info("worker process %d started (pid %d)%s", slot, child.pid, metrics)
            code = await child.wait()
            if self._stopping.is_set():
                logger.info("worker process %d (pid %d) exited with %d", slot, child.pid, code)
                # Killed by the signal we forwarded before it could handle it: it was still
                # starting (importing), so it ran no job and its stop is a clean one.
                return 0 if code in (-signal.SIGTERM, -signal.SIGINT) else code
            if code == CONFIG_ERROR:
                logger.error(
                    "worker process %d (pid %d) exited with %d: a setting to fix (its error "
                    "above); stopping every worker process",
                    slot,
                    child.pid,
                    code,
                )
                self._forward(signal.SIGTERM)
                return code
            if time.monotonic() - started > STABLE_AFTER:
                delay = RESTART_DELAYS[0]
            logger.error(
                "worker process %d (pid %d) died with %d; restarting in %.0fs",
                slot,
                child.pid,
                code,
                delay,
            )
            await sleep_unless(self._stopping, delay)
            delay = min(delay * 2, RESTART_DELAYS[1])
        return 0  # asked to stop while this slot had no live child


@dataclass(frozen=True)
class ChildCommand:
    """The command of each child: one process serving `queues`, its metrics on port + slot."""

    queues: Sequence[str]
    metrics_port: int | None = None

    def metrics_port_of(self, slot: int) -> int | None:
        if self.metrics_port is None:
            return None
        # Port 0 (any free port) stays 0 for every child; each logs the port it took.
        return self.metrics_port + slot if self.metrics_port else 0

    def line(self, slot: int) -> list[str]:
        line = [sys.executable, "-m", "workers", "worker", "--processes", "1", "--queues"]
        line += self.queues
        port = self.metrics_port_of(slot)
        return line if port is None else [*line, "--metrics-port", str(port)]


def child_env(redis_url: str | None, settings: PostroomSettings) -> dict[str, str]:
    """The parent's environment, with the Redis it resolved and the settings its flags set."""
    return {
        **os.environ,
        **({"REDIS_URL": redis_url} if redis_url else {}),
        "POSTROOM_LOG_FORMAT": settings.log_format,
        "POSTROOM_METRICS_HOST": settings.metrics_host,
    }
