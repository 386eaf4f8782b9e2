"""The harness every benchmark script shares, so that a script only describes its workloads.

Run the scripts as modules from the checkout (no ``sys.path`` edits anywhere)::

    python -m bench.bench_core [--quick] [--json PATH] [--markdown [PATH]]

and import what they share from here::

    from bench import _harness as h

    parser = h.parser(__doc__)                    # --quick, --json PATH, --markdown [PATH]
    h.redis_url_option(parser)                    # --redis-url (default $REDIS_URL, else local)
    args = parser.parse_args(argv)
    h.timed_loop(op, start, n)                    # seconds for op(start) .. op(start+n-1), GC off
    h.median(xs), h.spread(xs), h.percentile(xs, 0.99)   # None (median, spread) on too few
    h.num(value, ",.1f", 1e6)                     # a table cell; "-" for None
    meta = h.environment(quick=args.quick, redis_url=args.redis_url, extra="...")
    h.publish(doc, args, data, script="bench_core.py", default_markdown=h.RESULTS / "core.md")

What is here:

* :func:`parser` and :func:`redis_url_option`: the options every script has;
* :data:`JSON_LIB`, :func:`jdumps`, :func:`jloads`: orjson when installed, else the stdlib
  (the name goes in each report's header);
* :func:`timed_loop`: the timing loop (``time.perf_counter`` around a plain loop, the garbage
  collector collected before and disabled during it);
* :func:`median`, :func:`spread` (half the min-max range over the median), :func:`percentile`
  (nearest rank), :func:`num` (one formatted number, ``-`` for None), :func:`ms`;
* :func:`version` of an installed distribution, :func:`load_average`, :func:`environment`
  (python, platform, CPUs, load average, start time, the masked URLs given),
  :func:`mask_url` (``depcache.config``'s: a URL's password never reaches a report);
* :class:`Document` and :class:`Table` (``bench/_output.py``): the report, printed as text and
  written as markdown; :func:`publish` prints it and writes ``--json`` / ``--markdown``;
* :class:`Problem`: raised when a contender misbehaves (its measurement would mean nothing).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json as stdjson
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from depcache.config import mask_url

from ._output import Document, Table

__all__ = [
    "JSON_LIB",
    "RESULTS",
    "ROOT",
    "Document",
    "Problem",
    "Table",
    "environment",
    "jdumps",
    "jloads",
    "load_average",
    "mask_url",
    "median",
    "ms",
    "num",
    "parser",
    "percentile",
    "publish",
    "redis_url_option",
    "spread",
    "timed_loop",
    "version",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

try:
    import orjson

    JSON_LIB = f"orjson {orjson.__version__}"
    jdumps: Callable[[Any], bytes | str] = orjson.dumps
    jloads: Callable[[Any], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is in the bench extra
    JSON_LIB = "json (stdlib; install orjson for the fast path)"
    jdumps = stdjson.dumps
    jloads = stdjson.loads


class Problem(Exception):
    """A contender misbehaved: the measurement would be meaningless."""


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser with ``--quick``, ``--json PATH`` and ``--markdown [PATH]`` (``args.markdown``
    is ``""`` for the script's default path, None without the option); its description is the
    first paragraph of ``doc``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    p.add_argument("--quick", action="store_true", help="fewer, shorter repeats (a smoke run)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument(
        "--markdown",
        nargs="?",
        const="",
        metavar="PATH",
        help="also write the tables as markdown (default path: the script's in bench/results/)",
    )
    return p


def redis_url_option(p: argparse.ArgumentParser) -> None:
    """``--redis-url``, default ``$REDIS_URL``, else ``redis://127.0.0.1:6379/0``."""
    p.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis to run against (default: $REDIS_URL or redis://127.0.0.1:6379/0)",
    )


# --------------------------------------------------------------------------------------------
# Timing and statistics
# --------------------------------------------------------------------------------------------


def timed_loop(op: Callable[[int], Any], start: int, n: int) -> float:
    """Run op(start) ... op(start + n - 1) with the GC off; return elapsed seconds."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for i in range(start, start + n):
            op(i)
        return time.perf_counter() - t0
    finally:
        gc.enable()


def median(values: Sequence[float]) -> float | None:
    """The median, or None without values."""
    return statistics.median(values) if values else None


def spread(values: Sequence[float]) -> float | None:
    """Half the min-max range as a fraction of the median (how far the repeats disagree), or
    None with fewer than two values."""
    med = median(values)
    if not med or len(values) < 2:
        return None
    return (max(values) - min(values)) / 2 / med


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def num(value: float | None, spec: str, scale: float = 1.0) -> str:
    """``value * scale`` formatted with ``spec``; ``-`` for None."""
    return "-" if value is None else format(value * scale, spec)


def ms(seconds: float | None) -> float | None:
    """Seconds as milliseconds rounded for JSON, None kept."""
    return None if seconds is None else round(seconds * 1e3, 4)


# --------------------------------------------------------------------------------------------
# Environment and output
# --------------------------------------------------------------------------------------------


def version(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (rounded), None where the system has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return None


def environment(*, quick: bool, **urls: str) -> dict[str, Any]:
    """What every report records about its run; ``urls`` (name=URL) are recorded masked."""
    load = load_average()
    meta: dict[str, Any] = {name: mask_url(url) for name, url in urls.items()}
    meta.update(
        {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": load,
            "json": JSON_LIB,
            "depcache": version("depcache"),
            "quick": quick,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )
    return meta


def publish(
    doc: Document,
    args: argparse.Namespace,
    data: dict[str, Any],
    *,
    script: str,
    default_markdown: Path,
    flags: str = "",
) -> None:
    """Print the report; write ``data`` to ``--json`` and the report to ``--markdown`` (whose
    heading shows the command, with ``flags``: the options that changed what was measured)."""
    print()
    print(doc.text())
    mode = "quick" if getattr(args, "quick", False) else "full"
    if args.json:
        Path(args.json).write_text(stdjson.dumps(data, indent=2, default=str) + "\n")
    if args.markdown is not None:
        path = Path(args.markdown) if args.markdown else default_markdown
        module = "bench." + script.removesuffix(".py")
        command = f"python -m {module}" + (" --quick" if mode == "quick" else "") + flags
        title = f"{script} ({mode} run, {data.get('meta', {}).get('started', '')})"
        doc.write_markdown(path, title, command)
        print(f"markdown written to {path}")
