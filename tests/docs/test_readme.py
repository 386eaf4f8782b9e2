"""Every fenced code block of README.md runs, so none can rot.

A block may be preceded by a marker ``<!-- test: key=value flag ... -->``:

- ``session=NAME``: python blocks of one session run in order in one namespace (one process,
  one event loop: top-level ``await`` works); a block without it is a session of its own;
- ``setup=NAME``: the session starts with the snippet ``SETUPS[NAME]`` of this file;
- ``needs=a,b``: modules the block needs; the session is skipped while one is not importable
  (e.g. ``depcache_celery.emit`` while it is being written), and runs as soon as it is;
- ``json=event|invalidation|debezium``: the JSON is also fed to the matching parser;
- ``bash``: run the block's commands by the rules of :func:`run_bash_line`;
- ``skip="reason"``: not run (only what needs a Docker engine or a named external worker).

Blocks run against the real servers, with the README's host names and names replaced by the
test's (``SUBSTITUTIONS``): unique prefixes, exchanges and queues, deleted afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Queue

import depcache.announce
import depcache_celery

ROOT = Path(__file__).resolve().parents[2]


def optional_dependencies() -> dict[str, str]:
    """pyproject.toml's extras: name -> its requirement list as written (tomllib is 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r"^([a-z][a-z0-9-]*) = (\[.*?\])$", section, flags=re.M | re.S))


README = ROOT / "README.md"
KNOWN_OPTIONS = {"session", "setup", "needs", "json", "bash", "skip"}


@dataclass
class Block:
    line: int
    lang: str
    code: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"README.md:{self.line}"


def parse_readme(text: str) -> list[Block]:
    """The fenced blocks, with the options of the marker right before each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    pending: dict[str, str] = {}
    index = 0
    while index < len(lines):
        stripped = lines[index].strip()
        marker = re.fullmatch(r"<!-- test: (.*) -->", stripped)
        if marker:
            pending = {}
            for item in shlex.split(marker.group(1)):
                key, _, value = item.partition("=")
                pending[key] = value
        elif stripped.startswith("```"):
            indent = len(lines[index]) - len(lines[index].lstrip())
            lang, start, body = stripped[3:].strip(), index + 1, []
            index += 1
            while not lines[index].strip().startswith("```"):
                body.append(lines[index][indent:] if lines[index].strip() else "")
                index += 1
            blocks.append(Block(start, lang, "\n".join(body) + "\n", pending))
            pending = {}
        elif stripped:
            pending = {}
        index += 1
    return blocks


BLOCKS = parse_readme(README.read_text())


def sessions() -> dict[str, list[Block]]:
    result: dict[str, list[Block]] = {}
    for block in BLOCKS:
        if block.lang == "python" and "skip" not in block.options:
            name = block.options.get("session") or f"line{block.line}"
            result.setdefault(name, []).append(block)
    return result


# --- what the blocks need -------------------------------------------------------------------------

SETUPS = {
    "core": """
def fetch_user_from_database(user_id):
    return {"id": user_id, "name": "Ada"}

async def fetch_user_async(user_id):
    return {"id": user_id, "name": "Ada"}
""",
    "emit": """
from celery import Celery
app = Celery("readme", broker="amqp://guest:guest@localhost//")
app.conf.task_default_queue = "depcache.events.tasks"
app.conf.depcache_exchange = "depcache.events"
app.set_current()
""",
}


@dataclass
class Names:
    uid: str

    def substitutions(self, urls: dict[str, str]) -> list[tuple[str, str]]:
        return [
            *urls.items(),
            ("depcache.events", f"readme.{self.uid}.events"),
            (
                'Celery("yourapp", ',
                f'Celery("yourapp", task_default_queue="readme.{self.uid}.tasks", ',
            ),
        ]


URL_FIXTURES: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "redis://localhost:6379/0": lambda r: str(r.getfixturevalue("redis_url")),
    "amqp://guest:guest@localhost//": lambda r: str(r.getfixturevalue("rabbitmq_url")),
    "redis://node-1:7000/0": lambda r: str(r.getfixturevalue("cluster_url")),
    "redis://users-redis:6379/0": lambda r: r.getfixturevalue("standalone_servers")[0].url,
    "redis://pages-redis:6379/0": lambda r: r.getfixturevalue("standalone_servers")[1].url,
    "postgresql://postgres@localhost:5432/postgres": lambda r: str(
        r.getfixturevalue("logical_postgres").dsn()
    ),
}


def substitute(code: str, request: pytest.FixtureRequest, names: Names) -> str:
    urls = {readme: get(request) for readme, get in URL_FIXTURES.items() if readme in code}
    for old, new in names.substitutions(urls):
        code = code.replace(old, new)
    code = re.sub(r'prefix="([^"]+)"', rf'prefix="\1-{names.uid}"', code)
    return re.sub(r"--prefix (\S+)", rf"--prefix \1-{names.uid}", code)


@pytest.fixture
def names(request: pytest.FixtureRequest) -> Iterator[Names]:
    """Unique names; afterwards their keys (main Redis) and broker entities are deleted."""
    value = Names(uuid.uuid4().hex[:10])
    yield value
    client = redis.Redis.from_url(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    try:
        keys = list(client.scan_iter(match=f"*{value.uid}*"))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()
    if "rabbitmq_url" in request.fixturenames or _used_rabbit(request):
        with Connection(str(request.getfixturevalue("rabbitmq_url"))) as conn:
            channel = conn.default_channel
            base = f"readme.{value.uid}.events"
            for queue in (f"{base}.worker", f"{base}.dead", f"{base}.tasks", f"{base}.probe"):
                channel.queue_delete(queue)  # type: ignore[attr-defined]
            channel.exchange_delete(base)  # type: ignore[attr-defined]


def _used_rabbit(request: pytest.FixtureRequest) -> bool:
    return bool(getattr(request.node, "used_rabbit", False))


def missing_modules(blocks: list[Block]) -> list[str]:
    needed = {m for b in blocks for m in b.options.get("needs", "").split(",") if m}
    missing = []
    for module in sorted(needed):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(module)
    return missing


# --- the whole README is covered ------------------------------------------------------------------


def test_every_block_is_run_or_says_why_not() -> None:
    assert len(BLOCKS) > 20
    for block in BLOCKS:
        assert set(block.options) <= KNOWN_OPTIONS, (block.where, block.options)
        assert block.lang in ("python", "bash", "json"), f"{block.where}: fence needs a language"
        if "skip" in block.options:
            assert block.options["skip"], f"{block.where}: skip needs a reason"
    skipped = [b.where for b in BLOCKS if "skip" in b.options]
    assert len(skipped) <= 2, skipped
    for block in BLOCKS:
        if block.lang == "python":
            compile(block.code, block.where, "exec", flags=0x2000)  # PyCF_ALLOW_TOP_LEVEL_AWAIT


def test_the_readme_has_the_sections_the_issue_asks_for() -> None:
    headings = re.findall(r"^#+ (.+)$", README.read_text(), flags=re.MULTILINE)
    for wanted in (
        "Install",
        "Quick start",
        "Concepts",
        "Configuration",
        "Event schema for other services",
        "Emitting events from your app",
        "Operations",
        "Dead letters",
        "Worker counters and metrics",
        "Performance",
        "Migrating from simple-dep-cache",
    ):
        assert wanted in headings, wanted
    assert "![" in README.read_text()  # the performance chart
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text()):
        assert (ROOT / image).exists(), image


# --- python ---------------------------------------------------------------------------------------

RUNNER = """
import ast, asyncio, json, sys
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__readme__"}
loop = asyncio.new_event_loop()
for where, code in blocks:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if asyncio.iscoroutine(result):
        loop.run_until_complete(result)
    print(f"ran {where}", flush=True)
"""


@pytest.mark.redis
@pytest.mark.parametrize("session", sorted(sessions()))
def test_python_session(session: str, request: pytest.FixtureRequest, names: Names) -> None:
    blocks = sessions()[session]
    missing = missing_modules(blocks)
    if missing:
        pytest.skip(f"{session}: needs {', '.join(missing)}, not importable yet")
    request.getfixturevalue("redis_url")
    setup = next((b.options["setup"] for b in blocks if "setup" in b.options), None)
    sources = [("setup", SETUPS[setup])] if setup in SETUPS else []
    sources += [(b.where, b.code) for b in blocks]
    sources = [(where, substitute(code, request, names)) for where, code in sources]
    uses_rabbit = any("amqp" in code or "localhost:5672" in code for _, code in sources)
    probe = None
    if uses_rabbit:
        request.node.used_rabbit = True
        probe = _probe_queue(str(request.getfixturevalue("rabbitmq_url")), names)
    env = {**os.environ, "DEPCACHE_EXCHANGE": f"readme.{names.uid}.events"}
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(sources),
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, f"{session}:\n{result.stdout}\n{result.stderr}"
    for block in blocks:
        assert f"ran {block.where}" in result.stdout
    if probe is not None and session in ("bus", "emit"):
        # what the blocks published reached the exchange, and the worker would accept it
        messages = _drain(str(request.getfixturevalue("rabbitmq_url")), probe)
        assert messages, f"{session}: nothing was published"
        for body in messages:
            assert depcache_celery.parse_message(body).event == "user.updated"


def _probe_queue(broker: str, names: Names) -> str:
    """A queue bound to the session's exchange, to see what its blocks publish."""
    exchange = Exchange(f"readme.{names.uid}.events", type="topic", durable=True)
    queue = Queue(f"readme.{names.uid}.events.probe", exchange, routing_key="#", durable=True)
    with Connection(broker) as conn:
        queue(conn.default_channel).declare()
    return str(queue.name)


def _drain(broker: str, queue_name: str) -> list[bytes]:
    bodies: list[bytes] = []
    with Connection(broker) as conn:
        queue = Queue(queue_name, durable=True)(conn.default_channel)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            message = queue.get(no_ack=True)
            if message is None:
                if bodies:
                    break
                time.sleep(0.05)
                continue
            body = message.body
            bodies.append(body.encode() if isinstance(body, str) else bytes(body or b""))
    return bodies


# --- json -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.lang == "json"], ids=lambda b: f"line{b.line}"
)
def test_json_block(block: Block) -> None:
    value = json.loads(block.code)
    kind = block.options.get("json")
    if kind == "event":
        message = depcache_celery.parse_message(block.code)
        assert message.event == value["event"]
    elif kind == "invalidation":
        parsed = depcache.announce.parse_announcement(block.code.encode())
        assert parsed.dependencies == value["dependencies"]
    elif kind == "debezium":  # a Debezium envelope the worker accepts
        message = depcache_celery.parse_message(block.code)
        assert message.event.startswith("db."), message.event
        assert message.dependencies
    else:
        pytest.fail(f"{block.where}: say what the JSON is (json=event|invalidation)")


# --- bash -----------------------------------------------------------------------------------------


def _commands(code: str) -> list[str]:
    joined = code.replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            lines.append(line)
    return lines


def check_pip(words: list[str]) -> None:
    """``pip install`` lines are not run: their extras must exist in pyproject.toml."""
    extras = optional_dependencies()
    targets = [w for w in words[2:] if not w.startswith("-")]
    assert targets, words
    for target in targets:
        name, _, rest = target.partition("[")
        assert name in ("depcache", "."), f"pip installs {target!r}"
        for extra in rest.rstrip("]").split(",") if rest else []:
            assert extra in extras, f"extra {extra!r} is not in pyproject.toml"


@pytest.mark.redis
@pytest.mark.parametrize(
    "block",
    [b for b in BLOCKS if b.lang == "bash" and "skip" not in b.options],
    ids=lambda b: f"line{b.line}",
)
def test_bash_block(
    block: Block, request: pytest.FixtureRequest, names: Names, tmp_path: Path
) -> None:
    redis_url = str(request.getfixturevalue("redis_url"))
    code = substitute(block.code, request, names)
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL",)}
    env.update(
        REDIS_URL=redis_url,
        DEPCACHE_EXCHANGE=f"readme.{names.uid}.events",
        DEPCACHE_QUEUE=f"readme.{names.uid}.events.worker",
        DEPCACHE_DEAD_LETTER_QUEUE=f"readme.{names.uid}.events.dead",
        PYTHONPATH=str(ROOT),
    )
    if "amqp" in code:
        request.node.used_rabbit = True
        rabbit = str(request.getfixturevalue("rabbitmq_url"))
        with Connection(rabbit) as conn:  # the dead-letter queue the commands read
            Queue(f"readme.{names.uid}.events.dead", durable=True)(conn.default_channel).declare()
    background: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for line in _commands(code):
            for part in line.split("&&"):
                run_bash_line(part.strip(), env, tmp_path, background, names)
        for index, (line, process) in enumerate(background):
            if " watch " in f" {line} ":
                process.wait(timeout=30)
                out = (tmp_path / f"bg{index}.log").read_text()
                assert process.returncode == 0, out
                assert "invalidated user:123" in out, out
    finally:
        for _, process in background:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=20)


def run_bash_line(
    line: str,
    env: dict[str, str],
    workdir: Path,
    background: list[tuple[str, subprocess.Popen[bytes]]],
    names: Names,
) -> None:
    """Run one README command by the rule for its program; an unknown program fails."""
    line = line.split(" #", 1)[0].strip()
    detach = line.endswith("&")
    words = shlex.split(line.rstrip("&"))
    local_env = dict(env)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        local_env[key] = value
    program = words[0]
    if program == "pip":
        check_pip(words)
        return
    if words[:3] == ["python", "-m", "pytest"]:
        words = [*words, "--collect-only", "-q", "tests/docs/test_examples.py"]
    elif program == "python":
        local_env.pop("REDIS_URL", None)  # the demo's first run: nothing configured
    elif program not in ("depcache", "celery"):
        pytest.fail(f"no rule to run README command {line!r}: add one to tests/docs/test_readme.py")
    argv = [sys.executable, *words[1:]] if program == "python" else words
    if program == "celery":
        argv = [sys.executable, "-m", *words]
    if detach:
        log_path = workdir / f"bg{len(background)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv, env=local_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        background.append((line, process))
        if program == "celery":
            _wait_for_worker(process, local_env, log_path)
        else:
            time.sleep(1.0)  # let `watch` subscribe before the next commands
        return
    result = subprocess.run(
        argv, env=local_env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{line}:\n{result.stdout}\n{result.stderr}"


def _wait_for_worker(process: subprocess.Popen[bytes], env: dict[str, str], log: Path) -> None:
    """The worker is up once its event queue exists on the broker."""
    deadline = time.monotonic() + 40
    with Connection(env["CELERY_BROKER_URL"]) as conn:
        while True:
            assert process.poll() is None, log.read_text()
            try:
                conn.default_channel.queue_declare(  # type: ignore[attr-defined]
                    env["DEPCACHE_QUEUE"], passive=True
                )
                return
            except Exception:
                conn.close()
                assert time.monotonic() < deadline, (
                    f"the worker never declared its queue\n{log.read_text()}"
                )
                time.sleep(0.5)
