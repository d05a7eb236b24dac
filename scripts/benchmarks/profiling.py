"""`--profile`: one extra drain per system with py-spy attached, summarised as text.

py-spy attaches once the worker has run its first job (attaching to an interpreter still
starting up fails), samples until the queue is drained, and is stopped with SIGINT so that it
writes its collapsed stacks. The summary gives CPU self time by package and the hottest
functions, self and inclusive, which is usually enough to see what bounds a worker.
"""

from __future__ import annotations

import collections
import contextlib
import re
import signal
import subprocess
import time
from pathlib import Path

from benchmarks import jobs, processes, servers
from benchmarks.measure import Harness, MeasurementError, Progress
from benchmarks.systems import System

# Leaf-frame file paths mapped to the package they belong to, first match wins.
BUCKETS = (
    ("/workers/", "postroom workers/"),
    ("/config/", "postroom config/"),
    ("/benchmarks/", "benchmark job code"),
    ("site-packages/arq/", "arq"),
    ("site-packages/redis/", "redis-py"),
    ("site-packages/hiredis", "hiredis"),
    ("site-packages/pydantic", "pydantic"),
    ("site-packages/uvloop", "uvloop"),
    ("site-packages/orjson", "orjson"),
    ("/logging/", "logging (stdlib)"),
    ("/asyncio/", "asyncio (stdlib)"),
    ("site-packages/", "other libraries"),
    ("/lib/python3", "other stdlib"),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def _frame(raw: str) -> tuple[str, str]:
    match = _FRAME.match(raw.strip())
    if not match:
        return raw.strip(), ""
    return match["func"], match["file"]


def _bucket(path: str) -> str:
    return next((name for marker, name in BUCKETS if marker in path), "other")


def summarise(raw: Path, top: int = 25) -> str:
    """Self time by package, and the hottest functions, from py-spy's `raw` output."""
    total = 0
    by_bucket: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")[1:]]  # the first is the thread
        if not frames:
            continue
        total += count
        func, path = frames[-1]
        by_bucket[_bucket(path)] += count
        self_time[f"{func} ({Path(path).name})"] += count
        for name in {f"{f} ({Path(p).name})" for f, p in frames}:
            inclusive[name] += count
    if not total:
        return "no samples\n"

    def table(counter: collections.Counter[str]) -> str:
        return "\n".join(f"{100 * n / total:6.1f}%  {name}" for name, n in counter.most_common(top))

    return (
        f"{total} samples of CPU (idle excluded)\n\n"
        f"self time by package\n{table(by_bucket)}\n\n"
        f"self time by function\n{table(self_time)}\n\n"
        f"inclusive time by function\n{table(inclusive)}\n"
    )


def profile_drain(h: Harness, system: System, out: Path) -> str:
    """Drain `sizes.drain` no-ops under py-spy; writes <system>.raw and <system>.txt."""
    spy = h.root / ".bench-venv" / "bin" / "py-spy"
    raw = out / f"{system.name}.raw"
    count = h.sizes.drain
    with servers.fresh_redis(h.scratch) as server:
        client = servers.connect(server)
        h.fill(system, server.url, jobs.NOOP, count)
        spawned = time.monotonic()
        with h.worker(system, server.url, "profile") as (proc, log):
            progress = Progress(client, proc, log, spawned)
            progress.wait(1)
            pid = _busiest(processes.process_tree(proc.pid))
            argv = [str(spy), "record", "--pid", str(pid), "--rate", "250"]
            argv += ["--format", "raw", "--output", str(raw), "--nonblocking", "--full-filenames"]
            spy_log = h.log(system, "py-spy")
            recorder = processes.spawn(argv, h.env(server.url), h.scratch, spy_log)
            try:
                progress.wait(count)
            finally:
                recorder.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    recorder.wait(timeout=30)
                processes.stop(recorder, grace=1.0)
        client.close()
    if not raw.exists():
        raise MeasurementError(f"py-spy wrote nothing: {processes.tail(spy_log)}")
    text = summarise(raw)
    (out / f"{system.name}.txt").write_text(text)
    return f"{out / f'{system.name}.txt'}: {text.splitlines()[0]}"


def _busiest(pids: list[int]) -> int:
    """The process of a tree that runs the jobs (Taskiq forks it): the most CPU used in 0.3 s."""
    before = {pid: _cpu_ticks(pid) for pid in pids}
    time.sleep(0.3)
    return max(pids, key=lambda pid: _cpu_ticks(pid) - before[pid])


def _cpu_ticks(pid: int) -> int:
    """User plus system CPU time a process has used so far, in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])
