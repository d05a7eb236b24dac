"""Subprocesses the orchestrator starts, and the guarantee that none outlives it.

Each child gets its own session, so a terminal's Ctrl-C reaches only the orchestrator, which
then stops the children itself, once and in order: SIGTERM to the child's process group (a
worker drains), SIGKILL to whatever is left after a grace period, including descendants that
left the group (postroom's `--processes` children start their own sessions).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

_live: dict[int, subprocess.Popen[bytes]] = {}
# Descendants seen while a child ran: stopped with it even if they were re-parented.
_descendants: dict[int, set[int]] = {}


def _stat_after_name(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 2, which may contain
    spaces): state, ppid, ... so field N of stat(5) is index N - 3. None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_after_name(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))  # ppid
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its live descendants."""
    children = _children_by_parent()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kib(pid: int) -> int:
    """The largest VmHWM (peak resident set) in `pid`'s tree: its worker process.

    For a CLI that forks its worker (Taskiq), the process that ran the jobs is the largest.
    """
    tree = process_tree(pid)
    _descendants.setdefault(pid, set()).update(tree[1:])
    return max(_status_kib(p, "VmHWM") for p in tree)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of `pid`'s live tree (its worker processes), from /proc."""
    total = 0
    for p in process_tree(pid):
        fields = _stat_after_name(p)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def spawn(
    argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    """Start a child in its own session, its output appended to `log`."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _live[proc.pid] = proc
    return proc


def remember_descendants(proc: subprocess.Popen[bytes]) -> None:
    _descendants.setdefault(proc.pid, set()).update(process_tree(proc.pid)[1:])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> int | None:
    """SIGTERM the child's group, SIGKILL what is left after `grace` s; returns its exit code."""
    if proc.poll() is None:
        remember_descendants(proc)
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    leftovers = {p for p in _descendants.pop(proc.pid, set()) if _alive(p)}
    if leftovers:
        # A descendant that outlived its parent's drain (its own session): wait briefly, kill.
        deadline = time.monotonic() + grace
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.1)
            leftovers = {p for p in leftovers if _alive(p)}
        _kill(leftovers)
    _live.pop(proc.pid, None)
    return proc.returncode


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_all() -> None:
    """Stop every child still running (on exit, failure or Ctrl-C), quickly."""
    for proc in list(_live.values()):
        stop(proc, grace=5.0)


@contextlib.contextmanager
def running(
    argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child for the length of a block; stopped however the block ends."""
    proc = spawn(argv, env, cwd, log)
    try:
        yield proc
    finally:
        stop(proc)


def run(argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path, timeout: float) -> str:
    """Run a child to completion and return its stdout; its stderr goes to `log`.

    Raises RuntimeError with the end of the log if it fails or outlives `timeout`.
    """
    with log.open("ab") as err:
        proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    _live[proc.pid] = proc
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, grace=2.0)
        raise RuntimeError(f"{' '.join(argv[-6:])} timed out after {timeout:g}s") from None
    finally:
        _live.pop(proc.pid, None)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:])} exited with {proc.returncode}: {tail(log)}")
    return out.decode()


def tail(log: Path, lines: int = 15) -> str:
    """The end of a log, for an error message."""
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"
