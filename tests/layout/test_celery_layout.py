"""The public surface of depcache_celery survives its layout: every exported name, the public
module paths the README uses, and the ready-made app ``celery -A depcache_celery.worker`` finds
(made on first use, not when the package is imported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from celery import Celery
from celery.app.utils import find_app

import depcache
import depcache_celery

ROOT = Path(__file__).resolve().parents[2]

PUBLIC = [
    "DATABASE_EVENT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EVENT_TASK",
    "INVALIDATE_TASK",
    "BadMessage",
    "BatchOutcome",
    "BatchProcessor",
    "BusMessage",
    "EmitError",
    "EventConsumerStep",
    "EventError",
    "FanoutReport",
    "Installation",
    "Router",
    "Settings",
    "TemplateHandler",
    "aemit",
    "apply",
    "build_event",
    "default_router",
    "deferred",
    "emit",
    "event_exchange",
    "event_queue",
    "forward_invalidations",
    "install",
    "invalidate_later",
    "invalidates",
    "on_event",
    "parse_message",
    "publish_database_writes",
    "register_commit_hook",
    "stats",
    "stop_publishing_database_writes",
    "unregister_commit_hook",
]


def test_the_exported_names_are_pinned() -> None:
    assert sorted(depcache_celery.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(depcache_celery, name) is not None, name
    assert depcache_celery.EVENT_TASK == "depcache.event"
    assert depcache_celery.INVALIDATE_TASK == "depcache.invalidate"


def test_the_fanout_report_is_an_invalidation_report() -> None:
    report = depcache_celery.FanoutReport(["a"], removed={"m": 2}, unknown=["x"])
    assert isinstance(report, depcache.InvalidationReport)
    assert report.total == 2
    assert not report.ok  # an unknown manager was not invalidated
    assert depcache_celery.FanoutReport(["a"], removed={"m": 2}).ok


def test_the_public_module_paths_of_the_readme_import() -> None:
    import depcache_celery.sqlalchemy  # noqa: PLC0415
    import depcache_celery.testing  # noqa: PLC0415
    import depcache_celery.tracing  # noqa: PLC0415
    from depcache_celery.worker.monitoring import inspect_stats  # noqa: PLC0415

    assert callable(depcache_celery.sqlalchemy.track)
    assert callable(depcache_celery.tracing.enable)
    assert callable(depcache_celery.testing.capture_emits)
    assert callable(inspect_stats)


def test_importing_the_worker_package_makes_no_app_until_asked() -> None:
    probe = (
        "import depcache_celery.worker as w;"
        "assert 'app' not in vars(w), 'made on import';"
        "from celery.app.utils import find_app;"
        "a = find_app('depcache_celery.worker');"
        "assert a is w.app is find_app('depcache_celery.worker:app');"
        "print(type(a).__name__, a.main)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Celery", "depcache_celery"]


def test_make_app_is_where_the_readme_says() -> None:
    from depcache_celery.worker import make_app  # noqa: PLC0415

    app = make_app(allow_memory_broker=True)
    assert isinstance(app, Celery)
    assert find_app("depcache_celery.worker.make_app") is make_app
