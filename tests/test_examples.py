"""Every example runs, so none can rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_whole_flow_in_memory() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "in-memory backend" in out
    assert "computed: nothing (all hits)" in out
    assert "computed: get_page(123), get_user(123)\n" in out  # the worker invalidated user:123
    assert "'Ada Lovelace'" in out
    assert "computed: get_page(123), get_posts(123)\n" in out  # the raw bus event reached it
    assert "Sketch of the Analytical Engine" in out


def test_demo_runs_on_redis(redis_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url}
    env.pop("CELERY_BROKER_URL", None)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "manager 'demo' on redis://" in result.stdout
    assert "computed: get_page(123), get_posts(123)\n" in result.stdout
