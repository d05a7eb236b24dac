"""The soak's `postroom worker` processes: started, SIGKILLed and restarted, SIGSTOPped and
resumed, each signal written to the ledger's events as it is sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from chaos.ledger import LEDGER_ENV, LedgerFile

SCRIPTS = Path(__file__).resolve().parent.parent


def log_path(log_dir: Path, slot: int, pid: int) -> Path:
    return log_dir / f"worker-{slot}-{pid}.log"


def worker_env(
    redis_url: str, ledger_dir: Path, data_dir: Path, settings: dict[str, str]
) -> dict[str, str]:
    """The operator's environment less any Redis or postroom setting of its own, plus the
    soak's: its Redis, its task module, its ledger."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REDIS_", "POSTROOM_", "USE_QUEUE_EVENT_BUS"))
    }
    path = os.pathsep.join(p for p in (str(SCRIPTS), env.get("PYTHONPATH", "")) if p)
    return {
        **env,
        "PYTHONPATH": path,
        "REDIS_URL": redis_url,
        "POSTROOM_TASK_MODULES": "chaos.task",
        "POSTROOM_DATA_DIR": str(data_dir),
        LEDGER_ENV: str(ledger_dir),
        **settings,
    }


class WorkerSlot:
    """One of the soak's worker processes; a restart is a new process in the same slot."""

    def __init__(self, index: int, env: dict[str, str], log_dir: Path, cwd: Path) -> None:
        self.index = index
        self.env = env
        self.log_dir = log_dir
        self.cwd = cwd
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_paths: list[Path] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        self.starts += 1
        log = self.log_dir / f"worker-{self.index}-starting.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers", "worker", "--queues", "message-delivery"],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C at the soak's terminal is the soak's alone
            )
        # Named by its pid (worker_logs.py reads which process wrote what).
        self.log_paths.append(log.rename(log_path(self.log_dir, self.index, self.proc.pid)))

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def terminate(self, grace: float) -> int | None:
        """SIGTERM and wait for the drain; SIGKILL what outlives `grace` + 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=grace + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class WorkerPool:
    """The worker slots, with every spawn, kill, stop and resume in the ledger's events."""

    def __init__(self, slots: list[WorkerSlot], events: LedgerFile) -> None:
        self.slots = slots
        self.events = events
        self.stopped: set[int] = set()  # slot indexes SIGSTOPped now

    def spawn(self, slot: WorkerSlot) -> None:
        slot.spawn()
        self.events.append(k="spawn", slot=slot.index, pid=slot.pid)

    def kill_and_restart(self, slot: WorkerSlot) -> None:
        pid = slot.pid
        slot.signal(signal.SIGKILL)
        self.events.append(k="kill", slot=slot.index, pid=pid)  # after the signal: its last act
        assert slot.proc is not None
        slot.proc.wait()
        self.spawn(slot)

    def stop(self, slot: WorkerSlot) -> None:
        self.stopped.add(slot.index)
        self.events.append(k="stop", slot=slot.index, pid=slot.pid)  # before: no act after it
        slot.signal(signal.SIGSTOP)

    def resume(self, slot: WorkerSlot) -> None:
        slot.signal(signal.SIGCONT)
        self.events.append(k="resume", slot=slot.index, pid=slot.pid)
        self.stopped.discard(slot.index)

    def respawn_exited(self) -> int:
        """Restart the workers that exited on their own (none should: an outage or a bad job
        must not end a worker), each written to the events as a crash."""
        crashed = 0
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                self.events.append(
                    k="crash", slot=slot.index, pid=slot.pid, code=slot.proc.returncode
                )
                crashed += 1
                self.spawn(slot)
        return crashed

    def running(self) -> list[WorkerSlot]:
        """The slots free to be killed: alive and not stopped."""
        return [s for s in self.slots if s.index not in self.stopped]

    def terminate_all(self, grace: float) -> list[int | None]:
        return [slot.terminate(grace) for slot in self.slots]
