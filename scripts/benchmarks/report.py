"""results.json, results.md and chart.png from the samples of one `scripts/bench` run.

The targets are computed from the same run and reported as met or missed, never asserted:
a benchmark on a shared 2-core machine is evidence to read, not a test to pass.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.measure import Sizes
from benchmarks.systems import System


@dataclass(frozen=True)
class Inputs:
    systems: Sequence[System]
    runs: int
    sizes: Sizes
    quick: bool
    samples: dict[str, dict[str, list[float]]]
    details: dict[str, dict[str, Any]]
    errors: dict[str, list[str]]
    versions: dict[str, Any]
    started: float
    interrupted: bool
    redis_server: str = "?"
    postroom_source: dict[str, Any] | None = None
    cpu_steal_percent: float | None = None


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    value: str
    status: str  # "met", "missed" or "n/a"
    margin: str


def cpu_times() -> dict[str, int]:
    """The machine's CPU time counters (ticks) from /proc/stat, to compute steal over a run."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return {}
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {name: int(value) for name, value in zip(names, fields, strict=False)}


def steal_percent(before: dict[str, int], after: dict[str, int]) -> float | None:
    """Share of CPU time the hypervisor took from this VM: high steal makes figures noisy."""
    if not before or not after:
        return None
    total = sum(after.values()) - sum(before.values())
    return 100 * (after.get("steal", 0) - before.get("steal", 0)) / total if total else None


def machine() -> dict[str, Any]:
    """CPU model, cores and RAM from /proc, so results from different machines are not mixed."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration):
        mem_kib = 0
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def postroom_source(root: Path) -> dict[str, Any]:
    """The commit benchmarked, and which of postroom's files differed from it (read-only git).

    postroom changes under active development; a figure means little without this.
    """

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        # rstrip only: porcelain lines start with a status column that may be a space.
        return done.stdout.rstrip() if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "workers", "config", "tasks", "pyproject.toml")
    return {
        "commit": git("rev-parse", "--short", "HEAD") or "?",
        "uncommitted_changes": [line[3:] for line in changed.splitlines()],
    }


def medians(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {
        system: {metric: statistics.median(values) for metric, values in metrics.items() if values}
        for system, metrics in samples.items()
    }


def _target(name: str, goal: str, value: float | None, met: bool, margin: str) -> Target:
    if value is None:
        return Target(name, goal, "n/a", "n/a", "not measured")
    return Target(name, goal, f"{value:,.2f}", "met" if met else "missed", margin)


def targets(m: dict[str, dict[str, float]]) -> list[Target]:
    """The first spec's targets and round two's (issue 16), from the medians."""
    pr = m.get("postroom", {})
    drain = pr.get("drain")
    peers = {s: v["drain"] for s, v in m.items() if s != "postroom" and "drain" in v}
    out: list[Target] = []

    if drain is not None and peers:
        best = max(peers, key=lambda s: peers[s])
        ratio = drain / peers[best]
        out.append(
            _target(
                "drain throughput vs best peer",
                f"postroom ≥ best peer ({best}: {peers[best]:,.0f} jobs/s)",
                ratio,
                ratio >= 1,
                f"{ratio:.2f}x of {best} ({(ratio - 1) * 100:+.0f} %)",
            )
        )
    else:
        out.append(
            _target("drain throughput vs best peer", "postroom ≥ best peer", None, False, "")
        )

    arq_default = m.get("arq-default", {}).get("drain")
    value = drain / arq_default if drain is not None and arq_default else None
    out.append(
        _target(
            "drain throughput vs arq defaults",
            "≥ 5x arq-default",
            value,
            value is not None and value >= 5,
            f"{value:.1f}x (goal 5x)" if value is not None else "",
        )
    )

    for key, limit in (("latency_p50_ms", 5.0), ("latency_p99_ms", 25.0)):
        got = pr.get(key)
        label = key.removeprefix("latency_").removesuffix("_ms")
        out.append(
            _target(
                f"latency {label}",
                f"< {limit:g} ms",
                got,
                got is not None and got < limit,
                f"{got:.1f} ms vs {limit:g} ms ({got - limit:+.1f} ms)" if got is not None else "",
            )
        )

    cmds = pr.get("commands_per_job")
    arqs = {
        s: m[s]["commands_per_job"]
        for s in ("arq-default", "arq-tuned")
        if "commands_per_job" in m.get(s, {})
    }
    if cmds is not None and arqs:
        fewest = min(arqs, key=lambda s: arqs[s])
        out.append(
            _target(
                "Redis commands per job",
                f"< arq's ({fewest}: {arqs[fewest]:.1f})",
                cmds,
                cmds < arqs[fewest],
                f"{cmds:.1f} vs {arqs[fewest]:.1f} ({(cmds / arqs[fewest] - 1) * 100:+.0f} %)",
            )
        )
    else:
        out.append(_target("Redis commands per job", "< arq's", None, False, ""))

    tuned = m.get("arq-tuned", {}).get("drain")
    overhead = 1 - drain / tuned if drain is not None and tuned else None
    out.append(
        _target(
            "guarantees overhead vs tuned arq",
            "drain throughput ≤ 15 % below arq-tuned",
            None if overhead is None else overhead * 100,
            overhead is not None and overhead <= 0.15,
            f"{overhead * 100:.0f} % below arq-tuned"
            if overhead is not None and overhead > 0
            else (f"{-overhead * 100:.0f} % above arq-tuned" if overhead is not None else ""),
        )
    )

    two = pr.get("drain_2procs")
    scale = two / drain if two is not None and drain else None
    out.append(
        _target(
            "scaling over processes",
            "2 processes ≥ 1.6x 1 process",
            scale,
            scale is not None and scale >= 1.6,
            f"{scale:.2f}x (goal 1.6x)" if scale is not None else "",
        )
    )
    out += round_two_targets(m)
    return out


# Performance round two (issue 16): postroom's own figures, fixed goals, `≥` or `≤`.
ROUND_TWO = (
    ("enqueue 1-by-1", "enqueue_one", ">=", 10_000, "jobs/s"),
    ("latency p50 at 200 jobs/s", "latency_p50_ms", "<=", 0.35, "ms"),
    ("latency p99 at 200 jobs/s", "latency_p99_ms", "<=", 0.60, "ms"),
    ("Redis CPU per job (no-op drain)", "redis_cpu_us_per_job", "<=", 50, "µs"),
    ("worker peak RSS, 100k queued", "peak_rss_mib", "<=", 35, "MiB"),
    ("drain no-op kept", "drain", ">=", 12_800, "jobs/s"),
    ("end to end no-op kept", "e2e", ">=", 5_600, "jobs/s"),
    ("end to end 10 ms kept", "e2e_io", ">=", 4_700, "jobs/s"),
    ("enqueue bulk kept", "enqueue_bulk", ">=", 27_000, "jobs/s"),
)


def round_two_targets(m: dict[str, dict[str, float]]) -> list[Target]:
    pr = m.get("postroom", {})
    out: list[Target] = []
    for name, metric, op, goal, unit in ROUND_TWO:
        got = pr.get(metric)
        met = got is not None and (got >= goal if op == ">=" else got <= goal)
        margin = ""
        if got is not None:
            margin = f"{got:,.2f} vs {goal:,} {unit} ({(got / goal - 1) * 100:+.0f} %)"
        out.append(_target(name, f"{'≥' if op == '>=' else '≤'} {goal:,} {unit}", got, met, margin))
    return out


# Columns of the main table: metric, header, format.
COLUMNS = (
    ("enqueue_one", "enqueue 1-by-1 (jobs/s)", "{:,.0f}"),
    ("enqueue_bulk", "enqueue bulk (jobs/s)", "{:,.0f}"),
    ("drain", "drain no-op (jobs/s)", "{:,.0f}"),
    ("io", "I/O 10 ms (jobs/s)", "{:,.0f}"),
    ("e2e", "end to end no-op (jobs/s)", "{:,.0f}"),
    ("e2e_io", "end to end 10 ms (jobs/s)", "{:,.0f}"),
    ("latency_p50_ms", "latency p50 (ms)", "{:.2f}"),
    ("latency_p99_ms", "latency p99 (ms)", "{:.2f}"),
    ("commands_per_job", "Redis cmds/job", "{:.1f}"),
    ("worker_cpu_us_per_job", "worker CPU µs/job", "{:,.0f}"),
    ("redis_cpu_us_per_job", "Redis CPU µs/job", "{:,.0f}"),
    ("peak_rss_mib", "peak RSS, 100k queued (MiB)", "{:.0f}"),
)


def _cell(values: dict[str, float], metric: str, fmt: str) -> str:
    return fmt.format(values[metric]) if metric in values else "n/a"


SPREAD_METRICS = (
    ("enqueue_one", "enqueue 1-by-1"),
    ("drain", "drain"),
    ("io", "I/O"),
    ("e2e", "end to end"),
    ("latency_p50_ms", "p50"),
    ("latency_p99_ms", "p99"),
)


def _spread_section(inputs: Inputs) -> list[str]:
    """Max/min across runs: on a shared VM one run can be far off, and a reader should know."""
    if inputs.runs < 2:
        return []
    lines = [
        "",
        "## Run-to-run spread (max / min of the runs)",
        "",
        "How much to trust a difference: medians closer than the spread are not a result.",
        "",
        "| system | " + " | ".join(label for _, label in SPREAD_METRICS) + " |",
        "|---|" + "---|" * len(SPREAD_METRICS),
    ]
    for system in inputs.systems:
        samples = inputs.samples.get(system.name, {})
        cells = []
        for metric, _ in SPREAD_METRICS:
            values = samples.get(metric, [])
            ok = len(values) > 1 and min(values) > 0
            cells.append(f"{max(values) / min(values):.1f}x" if ok else "n/a")
        lines.append(f"| {system.name} | " + " | ".join(cells) + " |")
    return lines


def _commands_section(inputs: Inputs) -> list[str]:
    """Per job, the commands each system's drain sent: where its Redis cost comes from."""
    lines = [
        "",
        "## Redis commands per job, by command (last drain run)",
        "",
        "Commands run inside Lua scripts count, and so do idle polls during the drain.",
        "",
    ]
    for system in inputs.systems:
        counts = inputs.details.get(system.name, {}).get("drain_commands")
        if not counts:
            continue
        per_job = [(cmd, n / inputs.sizes.drain) for cmd, n in counts.items()]
        shown = ", ".join(f"{cmd} {n:.2f}" for cmd, n in per_job if n >= 0.01)
        lines.append(f"- **{system.name}**: {shown}")
    return lines if len(lines) > 5 else []


def markdown(inputs: Inputs, data: dict[str, Any]) -> str:
    m: dict[str, dict[str, float]] = data["medians"]
    s = inputs.sizes
    mach = data["machine"]
    lines = [
        "# postroom benchmark",
        "",
        f"{data['generated']} · {mach['cpu_model']}, {mach['cores']} cores, "
        f"{mach['ram_gib']} GiB RAM · Python {mach['python']} · {inputs.redis_server} "
        "(embedded, AOF everysec, fresh per measurement, loopback)"
        + (
            f" · CPU steal during the run {inputs.cpu_steal_percent:.0f} %"
            if inputs.cpu_steal_percent is not None
            else ""
        ),
        "",
        f"Median of {inputs.runs} run(s){' (--quick)' if inputs.quick else ''}; "
        f"enqueue {s.enqueue:,} jobs, drain {s.drain:,} no-op jobs, I/O {s.io:,} jobs of "
        f"{s.io_sleep * 1000:g} ms, latency {s.latency} jobs at {s.latency_rate:g}/s, RSS with "
        f"{s.rss:,} queued (once, first {s.rss_window:g} s of draining). One worker process at "
        "concurrency 100 for every system.",
        "",
    ]
    source = inputs.postroom_source or {}
    if source:
        changed = source.get("uncommitted_changes") or []
        lines += [
            f"postroom at commit {source.get('commit')}"
            + (f" with uncommitted changes to {', '.join(changed)}." if changed else ".")
            + (
                f" **postroom changed during the run** (started at {source['commit_at_start']});"
                " its figures may mix versions."
                if source.get("changed_during_run")
                else ""
            ),
            "",
        ]
    if inputs.interrupted:
        lines += ["**Interrupted: partial results.**", ""]
    header = ["system", *(c[1] for c in COLUMNS)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in inputs.systems:
        values = m.get(system.name, {})
        cells = [f"**{system.name}**" if system.name == "postroom" else system.name]
        cells += [_cell(values, metric, fmt) for metric, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    pr = m.get("postroom", {})
    if "drain" in pr or "drain_2procs" in pr:
        lines += [
            "",
            "## Scale (postroom, no-op drain)",
            "",
            "| worker processes | jobs/s | Redis cmds/job | worker CPU µs/job | Redis CPU µs/job "
            "| cores busy (worker + Redis) |",
            "|---|---|---|---|---|---|",
            *(
                f"| {n} | {_cell(pr, 'drain' + tail, '{:,.0f}')} | "
                f"{_cell(pr, 'commands_per_job' + tail, '{:.1f}')} | "
                f"{_cell(pr, 'worker_cpu_us_per_job' + tail, '{:,.0f}')} | "
                f"{_cell(pr, 'redis_cpu_us_per_job' + tail, '{:,.0f}')} | "
                f"{_cell(pr, 'cores_busy' + tail, '{:.2f}')} of {mach['cores']} |"
                for n, tail in ((1, ""), (2, "_2procs"))
            ),
        ]
    lines += [
        "",
        "## Targets",
        "",
        "| target | goal | value | status | by how much |",
        "|---|---|---|---|---|",
    ]
    for t in data["targets"]:
        mark = {"met": "✅ met", "missed": "❌ missed"}.get(t["status"], t["status"])
        lines.append(f"| {t['name']} | {t['goal']} | {t['value']} | {mark} | {t['margin']} |")
    lines += _spread_section(inputs)
    lines += _commands_section(inputs)
    lines += ["", "## Systems", "", "| system | versions | setup |", "|---|---|---|"]
    for system in inputs.systems:
        info = inputs.versions.get(system.name, {})
        versions = ", ".join(f"{k} {v}" for k, v in info.get("packages", {}).items())
        lines.append(f"| {system.name} | {versions} | {system.setup} |")
    lines += [
        "",
        "## Method",
        "",
        "- Each system runs in its own subprocesses (its own virtualenv where its redis-py "
        "clashes with arq's), against its own fresh Redis per measurement.",
        "- Enqueue: a client process times N awaited enqueue calls (bulk: 1000 jobs per call), "
        "no worker running.",
        "- Drain / I/O: jobs pre-queued, then one worker process starts; jobs/s from the first "
        "job done to the last (start-up excluded; from-spawn figures are in results.json). "
        "Every job INCRs a counter in Redis.",
        f"- End to end: {s.e2e:,} jobs enqueued one awaited call after another into a "
        "running, warmed-up worker; jobs/s from the first enqueue to the last job done.",
        "- Latency: a running, idle worker; probes enqueued at a fixed rate carry "
        "`time.time()`; each records start minus that into a Redis list.",
        "- Redis cmds/job: `INFO commandstats` deltas over the drain (commands run inside Lua "
        "scripts included), less the benchmark's own counter INCR and polling GETs.",
        "- Peak RSS: VmHWM of the worker process (largest in its process tree).",
    ]
    if inputs.errors:
        lines += ["", "## Errors", ""]
        for system, errors in inputs.errors.items():
            for error in errors:
                first, *rest = error.splitlines()
                lines.append(f"- **{system}** {first}")
                if rest:
                    lines += ["", "  ```", *("  " + r for r in rest), "  ```", ""]
    return "\n".join(lines) + "\n"


def write(out: Path, inputs: Inputs) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    m = medians(inputs.samples)
    data: dict[str, Any] = {
        "generated": datetime.datetime.fromtimestamp(inputs.started, datetime.UTC).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "machine": {**machine(), "cpu_steal_percent_during_run": inputs.cpu_steal_percent},
        "redis_server": inputs.redis_server,
        "postroom_source": inputs.postroom_source,
        "runs": inputs.runs,
        "quick": inputs.quick,
        "interrupted": inputs.interrupted,
        "sizes": asdict(inputs.sizes),
        "systems": {
            s.name: {"setup": s.setup, "versions": inputs.versions.get(s.name)}
            for s in inputs.systems
        },
        "medians": m,
        "samples": inputs.samples,
        "details": inputs.details,
        "targets": [asdict(t) for t in targets(m)],
        "errors": inputs.errors,
    }
    paths = [out / "results.json", out / "results.md"]
    paths[0].write_text(json.dumps(data, indent=2) + "\n")
    paths[1].write_text(markdown(inputs, data))
    from benchmarks import chart  # matplotlib is slow to import; only needed here

    paths.append(chart.draw(out / "chart.png", [s.name for s in inputs.systems], m, data))
    return paths


def rewrite(results_json: Path) -> list[Path]:
    """Rebuild results.md and chart.png (and results.json) from a results.json's samples.

    For changes to the report itself: no need to measure again.
    """
    from benchmarks.systems import SYSTEMS

    data = json.loads(results_json.read_text())
    source = data.get("postroom_source") or {}
    inputs = Inputs(
        systems=[SYSTEMS[name] for name in data["systems"]],
        runs=data["runs"],
        sizes=Sizes(**data["sizes"]),
        quick=data["quick"],
        samples=data["samples"],
        details=data["details"],
        errors=data["errors"],
        versions={name: s.get("versions") for name, s in data["systems"].items()},
        started=datetime.datetime.strptime(data["generated"], "%Y-%m-%d %H:%M UTC")
        .replace(tzinfo=datetime.UTC)
        .timestamp(),
        interrupted=data["interrupted"],
        redis_server=data["redis_server"],
        postroom_source=source,
        cpu_steal_percent=data["machine"].get("cpu_steal_percent_during_run"),
    )
    return write(results_json.parent, inputs)


if __name__ == "__main__":
    import sys

    for written in rewrite(
        Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results/results.json")
    ):
        print(written)
