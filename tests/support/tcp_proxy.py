"""A small threaded TCP proxy whose live connections a test can cut.

Put it between a client (a Celery worker) and a server (RabbitMQ) to make "the connection was
cut" real: :meth:`TcpProxy.cut` resets every live connection on both sides at once, so the
client sees its socket die mid-stream (and the server sees its client vanish, so RabbitMQ
requeues what that connection held unacknowledged). :meth:`TcpProxy.refuse` makes the
proxy drop new connections for a while, as if the server were unreachable.

    with TcpProxy(("127.0.0.1", 5672)) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}//"
        ...
        proxy.cut()                     # every live connection is reset
        proxy.cut(refuse_for=3.0)       # ... and new ones are dropped for 3 s

Each accepted connection gets one thread per direction; :meth:`cut` wakes them with
``shutdown()`` (a plain ``close()`` does not interrupt a blocked ``recv()`` on Linux).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

__all__ = ["TcpProxy"]

_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP RST (SO_LINGER 0) after waking any thread blocked on it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Pipe:
    """One proxied connection: the client's socket and ours to the upstream server."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self._closed = False
        self._lock = threading.Lock()
        self.bytes_up = 0
        self.bytes_down = 0

    def start(self) -> None:
        for source, target, up in (
            (self.client, self.upstream, True),
            (self.upstream, self.client, False),
        ):
            threading.Thread(
                target=self._pump,
                args=(source, target, up),
                name=f"tcp-proxy-{'up' if up else 'down'}",
                daemon=True,
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket, up: bool) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                target.sendall(data)
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
        except OSError:
            pass
        self.close(reset=False)

    def close(self, *, reset: bool) -> bool:
        """Close both sides (with RSTs when ``reset``); False when it was already closed."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        for sock in (self.client, self.upstream):
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
        self.proxy._forget(self)
        return True


class TcpProxy:
    """Forwards TCP connections from ``listen`` (default a free port on 127.0.0.1) to
    ``upstream``; see the module's docstring.

    Counters: ``accepted`` (connections proxied, over the proxy's life), ``refused``
    (connections dropped while refusing), ``cut_total`` (connections cut by :meth:`cut`).
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        listen: tuple[str, int] = ("127.0.0.1", 0),
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        self.upstream = upstream
        self.connect_timeout = connect_timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(listen)
        self._listener.listen(128)
        self.host: str = self._listener.getsockname()[0]
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pipes: set[_Pipe] = set()
        self._refuse_until = 0.0
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0
        self.refused = 0
        self.cut_total = 0

    # -- life cycle --------------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        """Start accepting connections (in a daemon thread)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and reset every live connection."""
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        self.cut()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------------
    @property
    def live(self) -> int:
        """Connections currently proxied."""
        with self._lock:
            return len(self._pipes)

    def cut(self, *, refuse_for: float = 0.0) -> int:
        """Reset every live connection on both sides; return how many were cut.

        With ``refuse_for`` > 0, connections arriving within that many seconds are dropped at
        once (the refusal starts before the cut, so no client slips back in between)."""
        if refuse_for > 0:
            self.refuse(refuse_for)
        with self._lock:
            pipes = list(self._pipes)
        cut = sum(1 for pipe in pipes if pipe.close(reset=True))
        with self._lock:
            self.cut_total += cut
        return cut

    def refuse(self, seconds: float) -> None:
        """Drop every connection that arrives within ``seconds`` from now."""
        with self._lock:
            self._refuse_until = max(self._refuse_until, time.monotonic() + seconds)

    # -- internals ---------------------------------------------------------------------------------
    def _forget(self, pipe: _Pipe) -> None:
        with self._lock:
            self._pipes.discard(pipe)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _address = self._listener.accept()
            except OSError:
                if self._stopped.is_set():
                    return
                time.sleep(0.05)
                continue
            with self._lock:
                refusing = time.monotonic() < self._refuse_until
                if refusing:
                    self.refused += 1
            if refusing:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=self.connect_timeout)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pipe = _Pipe(self, client, upstream)
            with self._lock:
                self._pipes.add(pipe)
                self.accepted += 1
            pipe.start()
