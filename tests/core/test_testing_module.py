"""depcache.testing and the pytest plugin (``depcache_pytest``): what an application's tests use."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import depcache
from depcache import CacheEventType, add_dependency, cache_with_deps
from depcache.testing import capture_events, memory_managers

pytest_plugins = ["pytester"]


def test_memory_managers_gives_a_fresh_in_memory_default_manager() -> None:
    calls: list[int] = []

    @cache_with_deps()
    def profile(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        add_dependency(f"user:{user_id}")
        return {"id": user_id}

    before = os.environ.get("DEP_CACHE_BACKEND")
    with memory_managers() as manager:
        assert manager.config.backend == "memory"
        assert depcache.get_or_create_cache_manager() is manager
        assert depcache.get_or_create_cache_manager("other").config.backend == "memory"
        assert profile(1) == profile(1) == {"id": 1}
        assert calls == [1]
    assert os.environ.get("DEP_CACHE_BACKEND") == before
    assert depcache.registered_managers() == {}
    with memory_managers(single_flight=False) as manager:
        assert manager.config.single_flight is False
        profile(1)  # a new store: computed again
        assert calls == [1, 1]


def test_capture_events_records_every_manager_or_one() -> None:
    with memory_managers() as manager:
        other = depcache.get_or_create_cache_manager("other")

        @cache_with_deps()
        def f() -> int:
            add_dependency("d")
            return 1

        @cache_with_deps(cache_manager=other)
        def g() -> int:
            return 2

        with capture_events() as everything, capture_events(other) as only_other:
            f()
            f()
            g()
            depcache.invalidate("d")
        assert everything.types() == ["miss", "set", "hit", "miss", "set"] + ["invalidate"] * 2
        assert [e.manager for e in everything][:5] == [manager.name] * 3 + ["other"] * 2
        invalidations = everything.of(CacheEventType.INVALIDATE)  # every manager, concurrently
        assert sorted((e.manager or "", e.key) for e in invalidations) == sorted(
            [(manager.name, "d"), ("other", "d")]
        )
        assert only_other.types() == ["miss", "set", "invalidate"]
        assert everything.of("hit")[0].value == 1
        f()  # recording stopped: nothing more is added, and the fast path is back
        assert len(everything) == 7
        assert not manager.events.active


def test_capture_events_sees_async_calls() -> None:
    async def scenario() -> list[str]:
        @cache_with_deps()
        async def f() -> int:
            return 1

        with capture_events() as events:
            await f()
            await f()
        return events.types()

    with memory_managers():
        assert asyncio.run(scenario()) == ["miss", "set", "hit"]


def test_the_plugin_imports_nothing_heavy() -> None:
    """The pytest11 entry point is loaded by every pytest run where depcache is installed."""
    code = (
        "import sys, depcache_pytest\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'depcache', 'redis'})\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_plugin_is_registered_and_its_fixture_works(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_app=textwrap.dedent(
            """
            import depcache
            from depcache import add_dependency, cache_with_deps
            from depcache.testing import capture_events

            calls = []

            @cache_with_deps()
            def profile(user_id):
                calls.append(user_id)
                add_dependency(f"user:{user_id}")
                return {"id": user_id}

            def test_cached_until_invalidated(memory_manager):
                assert memory_manager.config.backend == "memory"
                with capture_events() as events:
                    assert profile(1) == profile(1) == {"id": 1}
                    depcache.invalidate("user:1")
                    profile(1)
                assert calls == [1, 1]
                assert events.types() == ["miss", "set", "hit", "invalidate", "miss", "set"]

            def test_each_test_starts_empty(memory_manager):
                profile(1)
                assert calls == [1, 1, 1]
            """
        )
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    disabled = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:depcache")
    disabled.assert_outcomes(errors=2)
    disabled.stdout.fnmatch_lines(["*fixture 'memory_manager' not found*"])


def test_the_readme_example_passes_under_pytest(pytester: pytest.Pytester) -> None:
    """README "Testing your code": its block is a test file; run it as one."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Testing your code\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert block.startswith("# test_profiles.py\n")
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_profiles=block)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    broken = block.replace('"hit", "invalidate"', '"invalidate", "hit"')
    pytester.makepyfile(test_profiles=broken)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(failed=1)
