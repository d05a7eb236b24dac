"""chart.png: four panels a reader takes in at a glance, postroom in a colour of its own.

Horizontal bars (system names stay readable), a log scale where systems differ by orders of
magnitude (drain throughput, latency, enqueue), and each bar labelled with its value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

POSTROOM = "#d62728"
POSTROOM_DARK = "#8c1a1b"
PEER = "#9a9a9a"
SECOND = "#4a4a4a"


def _bars(
    ax: Axes,
    names: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None], str]],
    title: str,
    unit: str,
) -> None:
    """Grouped horizontal bars: one group per system, one bar per series.

    The scale turns logarithmic only when values span more than 20x, since log-scaled bars
    exaggerate small differences; postroom's bars are drawn in its own (darker for a second
    series) colour.
    """
    height = 0.8 / len(series)
    values = [v for _, vs, _ in series for v in vs if v]
    log = bool(values) and max(values) / min(values) > 20
    for i, (_, column, colour) in enumerate(series):
        for j, (name, value) in enumerate(zip(names, column, strict=True)):
            if value is None:
                continue
            y = j + (i - (len(series) - 1) / 2) * height
            shade = (POSTROOM if i == 0 else POSTROOM_DARK) if name == "postroom" else colour
            ax.barh(y, value, height=height * 0.9, color=shade)
            label = f" {value:,.0f}" if value >= 100 else f" {value:.1f}"
            ax.annotate(label, (value, y), va="center", fontsize=7)
    ax.set_yticks(range(len(names)), names)
    for tick in ax.get_yticklabels():
        if tick.get_text() == "postroom":
            tick.set_fontweight("bold")
            tick.set_color(POSTROOM)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(unit + (" (log scale)" if log else ""), fontsize=8)
    ax.margins(x=0.25 if log else 0.15)
    ax.grid(axis="x", alpha=0.3, which="both")
    if len(series) > 1:
        handles = [Patch(color=colour, label=label) for label, _, colour in series]
        ax.legend(handles=handles, fontsize=7, loc="lower right")


def draw(
    path: Path, names: Sequence[str], m: dict[str, dict[str, float]], data: dict[str, Any]
) -> Path:
    def col(metric: str) -> list[float | None]:
        return [m.get(n, {}).get(metric) for n in names]

    sizes = data["sizes"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    _bars(
        axes[0][0],
        names,
        [("drain", col("drain"), PEER)],
        f"Drain: {sizes['drain']:,} queued no-op jobs, 1 worker at concurrency 100 (higher is "
        "better)",
        "jobs/s",
    )
    _bars(
        axes[0][1],
        names,
        [("I/O", col("io"), PEER)],
        f"I/O-bound: {sizes['io']:,} jobs sleeping {sizes['io_sleep'] * 1000:g} ms, concurrency "
        "100 (higher is better)",
        "jobs/s",
    )
    latency = axes[1][0]
    _bars(
        latency,
        names,
        [("p50", col("latency_p50_ms"), PEER), ("p99", col("latency_p99_ms"), SECOND)],
        f"Enqueue-to-start latency, idle worker, {sizes['latency_rate']:g} jobs/s (lower is "
        "better)",
        "ms",
    )
    for limit in (5, 25):  # postroom's targets for p50 and p99
        latency.axvline(limit, color=POSTROOM, linestyle="--", linewidth=0.8)
    legend = latency.get_legend()
    handles = [*legend.legend_handles] if legend else []
    target = Line2D([], [], color=POSTROOM, linestyle="--", label="targets: p50 5, p99 25 ms")
    latency.legend(handles=[*handles, target], fontsize=7, loc="lower right")
    _bars(
        axes[1][1],
        names,
        [("one by one", col("enqueue_one"), PEER), ("bulk", col("enqueue_bulk"), SECOND)],
        "Enqueue rate, no worker running (higher is better)",
        "jobs/s",
    )
    mach = data["machine"]
    fig.suptitle(
        f"postroom vs peers · median of {data['runs']} run(s) · {mach['cpu_model']}, "
        f"{mach['cores']} cores · Python {mach['python']} · {data['redis_server']}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
