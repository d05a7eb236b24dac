"""What only the workers' logs tell: which dead run each recovery took over.

A run killed after its claim but before its job's body began leaves no line in the ledger,
yet counts as a death toward the `stalled` rule. The recovering worker logs the lease token
of the run it took over (`job recovered from the unfinished run <worker id>/<n>`); each log
file names its process (`worker-<slot>-<pid>.log`), and its first lines name its worker id.
The workers log JSON (POSTROOM_LOG_FORMAT=json), for the times to the millisecond.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import orjson

_FILE = re.compile(r"worker-\d+-(\d+)\.log$")
_SERVING = re.compile(r"postroom worker (\S+) serving")
_RECOVERED = re.compile(r"job recovered from the unfinished run (\S+)/\d+ ")


@dataclass(frozen=True, slots=True)
class Recovery:
    at: float
    lost_pid: int | None  # the process of the run taken over (None: no log names it)


def _records(path: Path) -> list[dict[str, object]]:
    rows = []
    for line in path.read_bytes().splitlines():
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a traceback's lines, or a line cut by a SIGKILL
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_recoveries(log_dir: Path) -> dict[str, list[Recovery]]:
    """Each job's recoveries, with the process whose run each took over."""
    pids: dict[str, int] = {}
    found: list[tuple[str, float, str]] = []
    for path in sorted(log_dir.glob("worker-*.log")):
        named = _FILE.search(path.name)
        for row in _records(path):
            message = str(row.get("message", ""))
            serving = _SERVING.search(message)
            if serving and named:
                pids[serving.group(1)] = int(named.group(1))
            recovered = _RECOVERED.search(message)
            if recovered:
                ts = row.get("ts")
                at = float(ts) if isinstance(ts, int | float) else 0.0
                found.append((str(row.get("job_id")), at, recovered.group(1)))
    recoveries: dict[str, list[Recovery]] = defaultdict(list)
    for job_id, at, worker in sorted(found, key=lambda f: f[1]):
        recoveries[job_id].append(Recovery(at, pids.get(worker)))
    return recoveries
