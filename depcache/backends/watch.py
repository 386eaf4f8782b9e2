"""Watching the servers behind a Redis backend: can they evict keys, and did a master lose data?

Two facts about a deployment decide how its backend must behave, and neither shows in the
replies of ordinary commands:

* **Eviction.** A server with ``maxmemory`` set and a policy other than ``noeviction`` may
  evict any key, a dependency's marker among them. The store then treats a missing marker as
  possibly lost (``lua/store.lua``); on a server that cannot evict, a missing marker is a new
  dependency.
* **Data loss.** A master restarted empty or from an old snapshot, or a replica promoted
  before it received every write (Redis replicates asynchronously), loses invalidations: an
  entry on another node, or restored from the snapshot, could then be served although its
  dependency changed. Each master's identity (its run id and replication id) changes exactly
  then. When it does, the watch raises each watched prefix's *floor* to a new epoch: every
  entry computed before is void from then on (``lua/lookup.lua``).

One :class:`DeploymentWatch` per deployment and process polls every master (``INFO``) every
``node_check_seconds`` (default 1) in a daemon thread. The identities are also kept in Redis,
per prefix (``{P:epoch}:nodes``), and compared there, so a process started after a restart
sees it too, and of many processes that notice one change, one raises the floor. A missing
record (a new prefix, or a record evicted or lost) counts as a change: the cost is one cold
cache, never a stale entry.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis.cluster import RedisCluster

from ..config import RedisConfig
from .cluster_client import create_cluster_client
from .redis_client import create_sync_client
from .runners import run_one, script

__all__ = [
    "DeploymentWatch",
    "NodeInfo",
    "evicting",
    "lost_data",
    "node_view",
    "watch_for",
]

logger = logging.getLogger("depcache")

_NO_REPLID = "0" * 40
#: the record while no identities were read since the floor was set (``lua/lookup.lua``)
_FRESH = "?"


@dataclass(frozen=True)
class NodeInfo:
    """What ``INFO server replication memory`` says about one master."""

    run_id: str
    replid: str
    replid2: str
    maxmemory: int
    policy: str
    #: every acknowledged write is on disk before the reply (AOF with ``appendfsync always``):
    #: a restart loses nothing
    durable: bool = False

    @classmethod
    def parse(cls, info: Mapping[str, Any], appendfsync: str | None = None) -> NodeInfo:
        """From redis-py's parsed ``INFO`` (which turns an all-digit id into an int) and the
        ``appendfsync`` setting (None: not readable, as where CONFIG is disabled)."""

        def text(name: str, default: str = "") -> str:
            value = info.get(name, default)
            return f"{value:040d}" if isinstance(value, int) else str(value)

        return cls(
            run_id=text("run_id"),
            replid=text("master_replid"),
            replid2=text("master_replid2", _NO_REPLID),
            maxmemory=int(info.get("maxmemory", 0) or 0),
            policy=str(info.get("maxmemory_policy", "noeviction")),
            durable=bool(int(info.get("aof_enabled", 0) or 0)) and appendfsync == "always",
        )

    @property
    def can_evict(self) -> bool:
        """Whether this server may evict keys when it runs out of memory."""
        return self.maxmemory > 0 and self.policy != "noeviction"


def evicting(nodes: Mapping[str, NodeInfo]) -> bool:
    """Whether any of ``nodes`` may evict keys (True when there are none: not known)."""
    return not nodes or any(node.can_evict for node in nodes.values())


def node_view(nodes: Mapping[str, NodeInfo]) -> str:
    """The identities of ``nodes`` as the JSON kept in Redis (stable for equal identities)."""
    view = {addr: [n.run_id, n.replid, n.replid2] for addr, n in sorted(nodes.items())}
    return json.dumps(view, separators=(",", ":"), sort_keys=True)


def lost_data(old_view: str | None, nodes: Mapping[str, NodeInfo]) -> bool:
    """Whether going from ``old_view`` (None: no record) to ``nodes`` may have lost writes.

    A master that restarted (new run id) may have lost writes, unless it is durable (AOF with
    ``appendfsync always``: what it acknowledged was on disk); one that failed over or was
    demoted (new replication id without a restart) or is gone may have; so may a new master
    that was a replica (a promoted replica keeps its former master's replication id as its
    second one). A new master that never replicated (an empty node added to a cluster) lost
    nothing.
    """
    if old_view is None:
        return True
    try:
        old = json.loads(old_view)
    except ValueError:
        return True
    if not isinstance(old, dict):
        return True
    if any(_lost(ident, nodes.get(addr)) for addr, ident in old.items()):
        return True
    return any(addr not in old and node.replid2 != _NO_REPLID for addr, node in nodes.items())


_SECTIONS = ("server", "replication", "memory", "persistence")


def _appendfsync(client: Any, **target: Any) -> Any:
    """``CONFIG GET appendfsync`` (None where CONFIG is disabled, as on managed services)."""
    try:
        return client.config_get("appendfsync", **target)
    except Exception:
        return None


def _lost(ident: Any, node: NodeInfo | None) -> bool:
    """Whether a master recorded as ``ident`` may have lost writes to become ``node``."""
    if node is None or not isinstance(ident, list) or len(ident) < 2:
        return True
    if ident[0] != node.run_id:
        return not node.durable
    return bool(ident[1] != node.replid)


def _fetch_nodes(client: Any) -> dict[str, NodeInfo]:
    """``INFO`` of every master the client talks to, by ``host:port``."""
    if isinstance(client, RedisCluster):
        primaries = {"target_nodes": RedisCluster.PRIMARIES}
        replies = client.info(*_SECTIONS, **primaries)
        settings = _appendfsync(client, **primaries)
        if not isinstance(replies, dict) or "run_id" in replies:  # one node: not keyed by node
            replies, settings = {"node": replies}, {"node": settings}
        if not isinstance(settings, dict):
            settings = {}
        return {
            str(addr): NodeInfo.parse(info, (settings.get(addr) or {}).get("appendfsync"))
            for addr, info in replies.items()
        }
    pool = client.connection_pool.connection_kwargs
    addr = f"{pool.get('host', 'localhost')}:{pool.get('port', 6379)}"
    settings = _appendfsync(client) or {}
    return {addr: NodeInfo.parse(client.info(*_SECTIONS), settings.get("appendfsync"))}


Reconciled = Callable[[str], None]


class DeploymentWatch(threading.Thread):
    """Polls the masters of one deployment and keeps the floors of its prefixes.

    Backends read :attr:`can_evict` (None until the first poll) and register their prefix with
    :meth:`watch`; ``on_loss(prefix)`` is called in this thread when a loss raised its floor
    (managers flush their L1 then).
    """

    def __init__(self, config: RedisConfig, interval: float) -> None:
        super().__init__(name=f"depcache-watch-{config.safe_url}", daemon=True)
        self.config = config
        self.interval = interval
        self.can_evict: bool | None = None
        self.nodes: dict[str, NodeInfo] = {}
        #: each watched prefix's floor as last read (a Redis Cluster hit compares with it
        #: instead of reading it from the epoch's node: it moves only when a loss is detected)
        self.floors: dict[str, int] = {}
        self._prefixes: dict[str, list[Reconciled]] = {}
        self._users: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._polled = threading.Event()
        self._polls = 0
        self._poll_done = threading.Condition()
        self._client: Any = None

    # -- what backends use ---------------------------------------------------------------------
    def watch(self, prefix: str) -> None:
        """Keep ``prefix``'s floor (until as many :meth:`unwatch` calls)."""
        with self._lock:
            self._prefixes.setdefault(prefix, [])
            self._users[prefix] = self._users.get(prefix, 0) + 1

    def on_loss(self, prefix: str, callback: Reconciled) -> None:
        """Call ``callback(prefix)`` (in the watch's thread) when a loss raised its floor."""
        with self._lock:
            self._prefixes.setdefault(prefix, []).append(callback)

    def unwatch(self, prefix: str) -> None:
        """Stop keeping ``prefix``; the thread ends when no prefix is left."""
        with self._lock:
            users = self._users.get(prefix, 0) - 1
            if users > 0:
                self._users[prefix] = users
                return
            self._users.pop(prefix, None)
            self._prefixes.pop(prefix, None)
            self.floors.pop(prefix, None)
            if not self._users:
                self._stopping.set()

    def wait_polled(self, timeout: float) -> bool:
        """Wait until the first poll finished (successfully or not)."""
        return self._polled.wait(timeout)

    def wait_next_poll(self, timeout: float) -> bool:
        """Wait until a poll that starts after this call has finished (successfully or not):
        then whatever happened to the servers before the call has been taken into account."""
        with self._poll_done:
            target = self._polls + 2  # the poll running now may have read the servers already
            return self._poll_done.wait_for(lambda: self._polls >= target, timeout)

    def stop(self) -> None:
        """Ask the thread to end."""
        self._stopping.set()

    # -- the thread ------------------------------------------------------------------------------
    def run(self) -> None:
        """Poll until stopped; errors are logged and retried at the next poll."""
        while not self._stopping.is_set():
            try:
                self.poll()
            except Exception as exc:  # a down server: try again at the next poll
                logger.debug("depcache: watching %s failed: %s", self.config.safe_url, exc)
                self._drop_client()
            finally:
                self._polled.set()
                with self._poll_done:
                    self._polls += 1
                    self._poll_done.notify_all()
            self._stopping.wait(self.interval)
        self._drop_client()

    def poll(self) -> None:
        """Read every master once; reconcile each prefix's record of their identities."""
        nodes = _fetch_nodes(self._connected())
        previous, self.nodes = self.nodes, nodes
        self.can_evict = evicting(nodes)
        # what this process saw change itself counts, whatever the record says
        seen = bool(previous) and lost_data(node_view(previous), nodes)
        with self._lock:
            prefixes = {p: list(cbs) for p, cbs in self._prefixes.items()}
        for prefix, callbacks in prefixes.items():
            raised = self._reconcile(prefix, nodes, seen, previous)
            self._read_floor(prefix)
            if raised:
                logger.warning(
                    "depcache: a master of %s lost data or changed (restart, failover); "
                    "entries of prefix %r computed before are void",
                    self.config.safe_url,
                    prefix,
                )
                for callback in callbacks:
                    callback(prefix)

    def _reconcile(
        self,
        prefix: str,
        nodes: Mapping[str, NodeInfo],
        seen: bool,
        previous: Mapping[str, NodeInfo],
    ) -> bool:
        """Compare-and-set the prefix's record; return True when this call raised the floor."""
        epoch = f"{prefix}:epoch"
        keys = (epoch, f"{{{epoch}}}:floor", f"{{{epoch}}}:nodes")
        view = node_view(nodes)
        client = self._connected()
        for _ in range(3):
            floor, stored = client.mget(keys[1], keys[2])
            old = None if stored is None else stored.decode("utf-8", "replace")
            if old == view:  # up to date: any change was handled by whoever recorded it
                return False
            if floor is None:
                bump = False  # a new prefix, or the floor was lost: its first lookup voids all
            elif old == _FRESH:
                bump = seen  # the floor was set since the record: older entries are void
            elif old is None:
                # the record was lost (evicted): what changed since it was written is not known,
                # unless this process watched all along and saw nothing change
                bump = seen or not previous
            else:
                bump = seen or lost_data(old, nodes)
            args = ("" if old is None else old, view, int(bump))
            if int(run_one(client, script("watch_bump", keys, *args))) == 1:
                return bump
        return False

    def _read_floor(self, prefix: str) -> None:
        floor = self._connected().get(f"{{{prefix}:epoch}}:floor")
        if floor is None:
            self.floors.pop(prefix, None)
        else:
            self.floors[prefix] = int(floor)

    def _connected(self) -> Any:
        if self._client is None:
            if self.config.cluster:
                self._client = create_cluster_client(self.config)
            else:
                self._client = create_sync_client(self.config)
        return self._client

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken client
                client.close()


_watches: dict[tuple[str, bool], DeploymentWatch] = {}
_watches_lock = threading.Lock()


def _forget_after_fork() -> None:
    # a forked child has none of the parent's threads: its watches start again on first use
    global _watches_lock  # noqa: PLW0603  # a lock held by another thread at fork time is dead
    _watches_lock = threading.Lock()
    _watches.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def watch_for(config: RedisConfig) -> DeploymentWatch | None:
    """The running watch of ``config``'s deployment (started on first use), or None when
    ``node_check_seconds`` is 0 (watching off)."""
    interval = config.node_check_seconds
    if interval <= 0:
        return None
    key = (config.url, config.cluster)
    with _watches_lock:
        watch = _watches.get(key)
        if watch is None or not watch.is_alive() or watch._stopping.is_set():
            watch = _watches[key] = DeploymentWatch(config, interval)
            watch.start()
        return watch
