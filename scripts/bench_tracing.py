"""What tracing costs: N no-op jobs enqueued one by one, then drained by one worker, with
POSTROOM_TRACING off and on, each run in a fresh process against one embedded Redis.

    .venv/bin/python scripts/bench_tracing.py                # 5,000 jobs, 3 runs of each
    .venv/bin/python scripts/bench_tracing.py --jobs 20000 --runs 5

"On" is what postroom and the SDK cost: an SDK tracer provider with a batch processor handing
every span to an exporter that drops it (what a real exporter's encoding and sending adds
depends on the exporter), a producer span per enqueue and a consumer span per run. The figures
are wall time and the process's CPU time (all its threads) per job, client and worker sharing
the process; medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from config.queues import QueueName
from config.settings import load_settings
from workers import JobContext, task
from workers.client import PostroomClient
from workers.connection.redis_server import EmbeddedRedis, resolve_redis
from workers.registry import registry
from workers.runner.supervisor import Supervisor
from workers.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


@task(queue=QueueName.DELIVERY, name="bench.noop")
async def noop(ctx: JobContext, n: int) -> None:
    return None


async def _measure(redis_url: str, jobs: int, tracing: bool) -> dict[str, float]:
    if tracing:  # the application's own provider, as a deployment sets one up
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Dropped(SpanExporter):
            def export(self, spans: object) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Dropped()))
        trace.set_tracer_provider(provider)
    settings = load_settings(
        redis_url=redis_url,
        key_prefix=f"bench-{uuid.uuid4().hex[:8]}",
        data_dir=Path(tempfile.mkdtemp()),
        tracing=tracing,
    )
    async with await PostroomClient.connect(settings) as client:
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(jobs):
            await client.enqueue(noop.call(n))
        enqueue = (time.perf_counter() - wall, time.process_time() - cpu)
    runtime = Runtime(settings)
    supervisor = Supervisor(
        runtime, registry, resolve_redis(settings)[0], [QueueName.DELIVERY], burst=True
    )
    wall, cpu = time.perf_counter(), time.process_time()
    await supervisor.run()
    drain = (time.perf_counter() - wall, time.process_time() - cpu)
    done = runtime.metrics.task(QueueName.DELIVERY, "bench.noop").completed
    if done != jobs:
        raise SystemExit(f"{done} of {jobs} jobs completed")
    return {
        "enqueue_us": enqueue[0] / jobs * 1e6,
        "enqueue_cpu_us": enqueue[1] / jobs * 1e6,
        "drain_us": drain[0] / jobs * 1e6,
        "drain_cpu_us": drain[1] / jobs * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("REDIS_URL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, mode = args.child
        print(json.dumps(asyncio.run(_measure(url, args.jobs, mode == "on"))))
        return
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as data, EmbeddedRedis(Path(data)) as redis:
        for _ in range(args.runs):
            for mode in ("off", "on"):  # interleaved: a drift of the machine hits both
                child = [sys.executable, __file__, "--jobs", str(args.jobs)]
                out = subprocess.run(
                    [*child, "--child", redis.url, mode],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                results[mode].append(json.loads(out.splitlines()[-1]))
    print(f"{args.jobs} jobs, median of {args.runs} runs (us per job)")
    print(f"{'tracing':8} {'enqueue':>8} {'cpu':>8} {'drain':>8} {'cpu':>8}")
    for mode, runs in results.items():
        keys = ("enqueue_us", "enqueue_cpu_us", "drain_us", "drain_cpu_us")
        row = [statistics.median(r[k] for r in runs) for k in keys]
        print(f"{mode:8} " + " ".join(f"{value:8.1f}" for value in row))


if __name__ == "__main__":
    main()
