"""The cache's own metrics (prometheus-client) and spans (OpenTelemetry SDK, in-memory
exporter), on real Redis: what each decorated call and invalidation records, and that turning
them off leaves the hot path as it was."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import depcache
import depcache.metrics
import depcache.tracing
from depcache import add_dependency, cache_with_deps, observe
from tests.support.servers import free_port

pytestmark = pytest.mark.redis


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    registry = CollectorRegistry()
    depcache.metrics.enable(registry)
    yield registry
    depcache.metrics.disable()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    depcache.tracing.enable(provider)
    yield exporter
    depcache.tracing.disable()


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_metrics_count_hits_misses_stores_refusals_errors_and_latency(
    registry: CollectorRegistry, redis_manager: depcache.CacheManager, prefix: str
) -> None:
    @cache_with_deps(cache_manager=redis_manager)
    def profile(user: int) -> dict[str, int]:
        add_dependency(f"user:{user}")
        if user == 2:  # invalidated while it computes: the stale-set guard refuses the store
            redis_manager.invalidate_dependency("user:2")
        return {"id": user}

    down = depcache.get_or_create_cache_manager(
        f"{prefix}down",
        config=depcache.RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0", prefix=f"{prefix}d"),
    )

    @cache_with_deps(cache_manager=down, silent_backend_errors=True)
    def unreachable() -> int:
        return 1

    profile(1)
    profile(1)
    profile(2)
    assert unreachable() == 1
    function = f"{__name__}.test_metrics_count_hits_misses_stores_refusals_errors_and_latency"
    labels = {"manager": redis_manager.name, "function": f"{function}.<locals>.profile"}
    assert _value(registry, "depcache_hits_total", **labels) == 1
    assert _value(registry, "depcache_misses_total", **labels) == 2
    assert _value(registry, "depcache_stores_total", **labels) == 1
    assert _value(registry, "depcache_stores_refused_total", **labels) == 1
    assert _value(registry, "depcache_call_seconds_count", **labels, result="hit") == 1
    assert _value(registry, "depcache_call_seconds_count", **labels, result="miss") == 2
    down_labels = {"manager": down.name, "function": f"{function}.<locals>.unreachable"}
    assert _value(registry, "depcache_errors_total", **down_labels) >= 1
    manager = {"manager": redis_manager.name}
    assert _value(registry, "depcache_invalidations_total", **manager) == 1
    assert _value(registry, "depcache_invalidation_seconds_count", **manager) == 1
    redis_manager.invalidate_dependency("user:1")
    assert _value(registry, "depcache_invalidated_entries_total", **manager) == 1


async def test_metrics_of_async_calls(
    registry: CollectorRegistry, redis_manager: depcache.CacheManager
) -> None:
    @cache_with_deps(cache_manager=redis_manager)
    async def item(n: int) -> int:
        add_dependency(f"item:{n}")
        return n

    assert await item(1) == 1
    assert await item(1) == 1
    await redis_manager.ainvalidate_dependency("item:1")
    labels = {"manager": redis_manager.name, "function": f"{__name__}.{item.__qualname__}"}
    assert _value(registry, "depcache_misses_total", **labels) == 1
    assert _value(registry, "depcache_hits_total", **labels) == 1
    assert _value(registry, "depcache_stores_total", **labels) == 1
    invalidated = _value(registry, "depcache_invalidated_entries_total", manager=redis_manager.name)
    assert invalidated == 1


def test_off_means_the_plain_hot_path(redis_manager: depcache.CacheManager) -> None:
    registry = CollectorRegistry()
    depcache.metrics.enable(registry)
    assert observe.state.on
    assert redis_manager.events.active  # the flow reports to the probe
    depcache.metrics.disable()
    assert not observe.state.on
    assert not redis_manager.events.active  # hits take the quick path again

    @cache_with_deps(cache_manager=redis_manager)
    def f() -> int:
        return 1

    f()
    f()
    assert registry.get_sample_value("depcache_hits_total", {"manager": redis_manager.name}) is None


def test_spans_of_nested_calls_and_an_invalidation(
    spans: InMemorySpanExporter, redis_manager: depcache.CacheManager, redis_url: str
) -> None:
    @cache_with_deps(cache_manager=redis_manager)
    def inner(user: int) -> int:
        add_dependency(f"user:{user}")
        return user

    @cache_with_deps(cache_manager=redis_manager)
    def outer(user: int) -> int:
        return inner(user) + 1

    assert outer(1) == 2
    first = {s.name.rsplit(".", 1)[-1]: s for s in spans.get_finished_spans()}
    assert set(first) == {"inner", "outer"}
    assert first["inner"].parent is not None
    assert first["inner"].parent.span_id == first["outer"].context.span_id
    for span in first.values():
        attributes = dict(span.attributes or {})
        assert attributes["depcache.result"] == "miss"
        assert attributes["depcache.stored"] is True
        assert attributes["depcache.manager"] == redis_manager.name
    spans.clear()
    assert outer(1) == 2
    [hit] = spans.get_finished_spans()
    assert dict(hit.attributes or {})["depcache.result"] == "hit"
    spans.clear()

    assert redis_manager.invalidate_dependency("user:1") == 2
    [invalidation] = spans.get_finished_spans()
    assert invalidation.name == f"depcache.invalidate {redis_manager.name}"
    assert invalidation.kind.name == "CLIENT"
    attributes = dict(invalidation.attributes or {})
    assert attributes["depcache.removed"] == 2
    assert attributes["db.system.name"] == "redis"
    assert attributes["server.port"] == int(redis_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])


def test_a_failing_call_has_an_error_span(spans: InMemorySpanExporter, prefix: str) -> None:
    down = depcache.get_or_create_cache_manager(
        prefix,
        config=depcache.RedisConfig(
            url=f"redis://app:hunter2@127.0.0.1:{free_port()}/0", prefix=prefix
        ),
    )

    @cache_with_deps(cache_manager=down)
    def f() -> int:
        return 1

    with pytest.raises(depcache.BackendError):
        f()
    [span] = spans.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert dict(span.attributes or {})["depcache.errors"] == 1
    assert "hunter2" not in str(span.status.description)
    with pytest.raises(depcache.BackendError):
        down.invalidate_dependency("x")
    invalidation = spans.get_finished_spans()[-1]
    assert invalidation.status.status_code.name == "ERROR"
    assert "hunter2" not in repr(dict(invalidation.attributes or {}))
