"""The worker's peak RSS with 100,000 queued no-op jobs, alone: the figure `scripts/bench`
takes last (`measure.peak_rss`, the same peer and harness), in about 30 s instead of a run.

    scripts/bench-rss                      # postroom, 100k queued, 20 s window
    scripts/bench-rss --runs 3 --system arq-tuned
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks import processes
from benchmarks.measure import Harness, Sizes, peak_rss
from benchmarks.systems import SYSTEMS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-rss", description=__doc__)
    parser.add_argument("--system", default="postroom", choices=list(SYSTEMS))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--count", type=int, default=Sizes.rss, help="jobs queued (100,000)")
    parser.add_argument("--window", type=float, default=Sizes.rss_window, help="seconds (20)")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="postroom-bench-rss-"))
    (scratch / "logs").mkdir()
    sizes = Sizes(rss=args.count, rss_window=args.window)
    harness = Harness(root=Path.cwd(), scratch=scratch, logs=scratch / "logs", sizes=sizes)
    try:
        for _ in range(args.runs):
            got = peak_rss(harness, SYSTEMS[args.system])
            print(
                f"{args.system}: peak RSS {got['peak_rss_mib']:.1f} MiB "
                f"({got['done_in_window']:,} of {got['queued']:,} jobs done in the window)"
            )
    finally:
        processes.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
