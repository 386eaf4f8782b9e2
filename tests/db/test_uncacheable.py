"""mark_uncacheable: the result is returned, not stored, not shared, and neither is its callers'."""

from __future__ import annotations

import threading

from depcache import ConfigBase, cache_with_deps, get_or_create_cache_manager, mark_uncacheable


def test_an_uncacheable_call_and_its_callers_are_not_stored(prefix: str) -> None:
    cache = get_or_create_cache_manager(prefix, config=ConfigBase(backend="memory", prefix=prefix))
    calls: list[str] = []

    @cache_with_deps(name=prefix)
    def inner(flag: bool) -> int:
        calls.append("inner")
        if flag:
            mark_uncacheable("read uncommitted rows")
        return 1

    @cache_with_deps(name=prefix)
    def outer(flag: bool) -> int:
        calls.append("outer")
        return inner(flag) + 1

    assert outer(True) == 2
    assert outer(True) == 2
    assert calls == ["outer", "inner"] * 2
    calls.clear()
    assert outer(False) == 2
    assert outer(False) == 2
    assert calls == ["outer", "inner"]
    mark_uncacheable("outside a cached call: nothing happens")
    assert cache.get("missing") is None


def test_an_uncacheable_result_is_not_shared_with_concurrent_calls(prefix: str) -> None:
    get_or_create_cache_manager(prefix, config=ConfigBase(backend="memory", prefix=prefix))
    entered, release = threading.Event(), threading.Event()
    results: list[str] = []

    # both calls use one key (the argument is not part of it), so the follower joins the leader
    @cache_with_deps(name=prefix)
    def shared() -> str:
        who = current.get(threading.get_ident(), "?")
        if who == "leader":
            mark_uncacheable("sees its own transaction's rows")
            entered.set()
            release.wait(5)
        return who

    current: dict[int, str] = {}

    def shared_key_call(who: str) -> str:
        current[threading.get_ident()] = who
        return str(shared())

    leader = threading.Thread(target=lambda: results.append(shared_key_call("leader")))
    leader.start()
    assert entered.wait(5)
    follower = threading.Thread(target=lambda: results.append(shared_key_call("follower")))
    follower.start()
    release.set()
    leader.join(5)
    follower.join(5)
    assert sorted(results) == ["follower", "leader"]  # the follower computed its own result
