"""Every example runs, so none can rot: each against the servers it is written for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

import depcache
import depcache_celery
from depcache_celery import Router, Settings, event_queue
from tests.support.celery_fixtures import (
    Names,
    embedded_worker,
    fill,
    make_app,
    start_worker_process,
    stop_process,
    wait_for,
)
from tests.support.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# read by the examples: each test sets what it needs and nothing leaks in from the shell
EXAMPLE_VARIABLES = (
    "REDIS_URL",
    "REDIS_CLUSTER",
    "CELERY_BROKER_URL",
    "CELERY_CONFIG_MODULE",
    "DEP_CACHE_PREFIX",
    "DEPCACHE_EXCHANGE",
    "DEPCACHE_QUEUE",
    "DEPCACHE_DEAD_LETTER_QUEUE",
    "PAGES_REDIS_URL",
    "PAGES_REDIS_CLUSTER",
    "WEBAPP_DB",
    "DEPCACHE_SETUP",
)


def example_env(**values: str) -> dict[str, str]:
    """The environment of an example: this one's without the examples' variables, plus
    ``values``, with the project root importable."""
    env = {k: v for k, v in os.environ.items() if k not in EXAMPLE_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), values.pop("PYTHONPATH", ""), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(values)
    return env


def run_example(*args: str, env: dict[str, str], timeout: float = 120) -> str:
    """Run ``python <args>`` in the project root; fail with its output unless it exits 0."""
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def bus_env(broker: str, names: Names, workdir: Path) -> dict[str, str]:
    """Variables putting an example on ``broker`` with the test's own exchange and queues."""
    config = f"examples_config_{names.uid}"
    (workdir / f"{config}.py").write_text(
        f"task_default_queue = {names.tasks!r}\nbroker_heartbeat = 0\n"
    )
    return {
        "CELERY_BROKER_URL": broker,
        "CELERY_CONFIG_MODULE": config,
        "DEPCACHE_EXCHANGE": names.exchange,
        "DEPCACHE_QUEUE": names.queue,
        "DEPCACHE_DEAD_LETTER_QUEUE": names.dead,
        "PYTHONPATH": str(workdir),
    }


def declare_event_queue(broker: str, names: Names) -> None:
    """Declare the worker's queue now, so that nothing published before the worker is up is
    lost."""
    settings = Settings(exchange=names.exchange, queue=names.queue)
    with Connection(broker) as conn:
        event_queue(settings)(conn.default_channel).declare()


# --- demo.py --------------------------------------------------------------------------------------

DEMO_FLOW = (
    "computed: nothing (all hits)",
    "computed: get_page(123), get_user(123)\n",  # the worker invalidated user:123
    "'Ada Lovelace'",
    "computed: get_page(123), get_posts(123)\n",  # the raw bus event reached it
    "Sketch of the Analytical Engine",
)


def test_demo_runs_the_whole_flow_in_memory() -> None:
    out = run_example("examples/demo.py", env=example_env())
    assert "in-memory backend" in out
    assert "bus: Celery broker memory://" in out
    for line in DEMO_FLOW:
        assert line in out


@pytest.mark.redis
def test_demo_runs_on_redis(redis_url: str, prefix: str) -> None:
    out = run_example("examples/demo.py", env=example_env(REDIS_URL=redis_url))
    assert "manager 'demo' on redis://" in out
    for line in DEMO_FLOW:
        assert line in out


@pytest.mark.redis
def test_demo_runs_on_redis_and_a_real_broker(
    redis_url: str, broker_url: str, names: Names, tmp_path: Path
) -> None:
    """REDIS_URL and CELERY_BROKER_URL set: the README's "servers" variant, on RabbitMQ and on
    Redis as the broker."""
    env = example_env(REDIS_URL=redis_url, **bus_env(broker_url, names, tmp_path))
    out = run_example("examples/demo.py", env=env)
    assert "manager 'demo' on redis://" in out
    scheme = broker_url.split("://", 1)[0]
    assert f"bus: Celery broker {scheme}://" in out
    for line in DEMO_FLOW:
        assert line in out


# --- quickstart.py --------------------------------------------------------------------------------

QUICKSTART_FLOW = (
    "first call: {'profile': {'id': '123', 'name': 'Ada'}}  computed: get_user_page('123'), "
    "fetch_user_from_database('123')\n",
    "second call: {'profile': {'id': '123', 'name': 'Ada'}}  computed: nothing (hit)\n",
    "invalidated user:123, entries removed: 2\n",
    "after the invalidation: {'profile': {'id': '123', 'name': 'Ada Lovelace'}}  "
    "computed: get_user_page('123'), fetch_user_from_database('123')\n",
)


def test_quickstart_in_memory() -> None:
    out = run_example("examples/quickstart.py", env=example_env())
    assert "manager 'quickstart' on the in-memory backend" in out
    for line in QUICKSTART_FLOW:
        assert line in out


@pytest.mark.redis
def test_quickstart_on_redis(redis_url: str, prefix: str) -> None:
    out = run_example(
        "examples/quickstart.py", env=example_env(REDIS_URL=redis_url, DEP_CACHE_PREFIX=prefix)
    )
    assert "manager 'quickstart' on redis://" in out
    for line in QUICKSTART_FLOW:
        assert line in out


# --- producer.py ----------------------------------------------------------------------------------


@pytest.mark.redis
def test_producer_publishes_raw_json_the_worker_applies(
    broker_url: str, names: Names, redis_manager: depcache.CacheManager
) -> None:
    router = Router()
    router.on_event("user.updated", deps=["user:{id}"])
    app = make_app(broker_url, names)
    depcache_celery.install(app, router=router)
    fill(redis_manager, {"u7": {"user:7"}, "p7": {"posts:user:7"}, "u8": {"user:8"}})
    declare_event_queue(broker_url, names)
    with embedded_worker(app):
        out = run_example(
            *("examples/producer.py", "user.updated", '{"id": 7}'),
            *("--dependency", "posts:user:7", "--broker", broker_url),
            *("--exchange", names.exchange),
            env=example_env(),
            timeout=60,
        )
        wait_for(
            lambda: not redis_manager.exists("u7") and not redis_manager.exists("p7"),
            timeout=20,
            what="the worker to apply the producer's event",
        )
    assert redis_manager.exists("u8")
    assert f"published to {names.exchange!r}" in out
    assert "guest:guest" not in out  # the password is never printed
    message = json.loads(out.split(": ", 1)[1])
    assert message["event"] == "user.updated"
    assert message["data"] == {"id": 7}
    assert message["dependencies"] == ["posts:user:7"]
    assert depcache_celery.parse_message(json.dumps(message)).event == "user.updated"


def test_producer_uses_the_environment_and_refuses_bad_data(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "examples/producer.py", "user.updated", "[1, 2]"],
        capture_output=True,
        text=True,
        timeout=60,
        env=example_env(),
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2
    assert "data must be a JSON object" in result.stderr


# --- multi_deployment.py --------------------------------------------------------------------------


@pytest.mark.redis
def test_multi_deployment_on_two_servers_and_a_cluster(
    standalone_servers: list[RedisServer], cluster_url: str, prefix: str
) -> None:
    first, second = standalone_servers
    env = example_env(
        USERS_REDIS_URL=first.url,
        PAGES_REDIS_URL=second.url,
        FEEDS_REDIS_CLUSTER_URL=cluster_url,
        DEP_CACHE_PREFIX=prefix,
    )
    out = run_example("examples/multi_deployment.py", env=env)
    assert f"manager 'users' on the server {first.url}" in out
    assert f"manager 'pages' on the server {second.url}" in out
    assert f"manager 'feeds' on the cluster {cluster_url}" in out
    assert "first load computed: users, pages, feeds\n" in out
    assert "second load computed: nothing (all hits)\n" in out
    assert "invalidate('user:1') removed: {'feeds': 1, 'pages': 1, 'users': 1}\n" in out
    assert "after the invalidation computed: users, pages, feeds\n" in out


def test_multi_deployment_names_the_missing_variables() -> None:
    result = subprocess.run(
        [sys.executable, "examples/multi_deployment.py"],
        capture_output=True,
        text=True,
        timeout=60,
        env=example_env(),
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 1
    assert "USERS_REDIS_URL, PAGES_REDIS_URL, FEEDS_REDIS_CLUSTER_URL" in result.stderr


# --- webapp/ --------------------------------------------------------------------------------------


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One JSON request; returns the status and the decoded body (None if not JSON)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


WORKERS = {
    # the app's own Celery app, with depcache_celery installed and the job imported
    "app-worker": ("examples.webapp.worker", {}),
    # the ready-made worker, as docker-compose runs it: managers, handlers and job from modules
    "ready-made-worker": (
        "depcache_celery.worker",
        {"DEPCACHE_SETUP": "examples.webapp.cache,examples.webapp.jobs"},
    ),
}


@pytest.fixture(params=sorted(WORKERS))
def webapp(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    rabbitmq_broker: str,
    names: Names,
    redis_url: str,
    cluster_url: str,
    prefix: str,
) -> Iterator[str]:
    """The example's worker (``celery -A examples.webapp.worker worker``, or the ready-made
    ``depcache_celery.worker``) and web app (``flask --app examples.webapp.app run``) as
    subprocesses, as docker-compose runs them:
    users cached on the test Redis, pages on the cluster, the bus on RabbitMQ. Yields the base
    URL of the web app."""
    env = example_env(
        REDIS_URL=redis_url,
        PAGES_REDIS_URL=cluster_url,
        PAGES_REDIS_CLUSTER="true",
        DEP_CACHE_PREFIX=prefix,
        WEBAPP_DB=str(tmp_path / "webapp.sqlite3"),
        **bus_env(rabbitmq_broker, names, tmp_path),
    )
    module, extra = WORKERS[request.param]
    declare_event_queue(rabbitmq_broker, names)
    worker = start_worker_process(tmp_path, module, {**env, **extra}, "worker.log")
    port = free_port()
    with (tmp_path / "web.log").open("wb") as log:
        web = subprocess.Popen(
            [
                *(sys.executable, "-m", "flask", "--app", "examples.webapp.app", "run"),
                *("--port", str(port), "--no-reload"),
            ],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert web.poll() is None, (tmp_path / "web.log").read_text()
        try:
            return http("GET", f"{base}/nothing-here")[0] == 404
        except OSError:
            return False

    try:
        wait_for(up, timeout=30, what="the web app")
        yield base
    finally:
        stop_process(web)
        stop_process(worker)


@pytest.mark.redis
def test_webapp_serves_cached_pages_that_a_background_job_invalidates(
    webapp: str, tmp_path: Path
) -> None:
    status, user = http("GET", f"{webapp}/users/1")
    assert status == 200, user
    assert user["name"] == "Ada"
    assert http("GET", f"{webapp}/users/1")[1] == user  # a hit: same computed_at
    status, page = http("GET", f"{webapp}/users/1/page")
    assert status == 200
    assert page["title"] == "Ada's page"
    assert http("GET", f"{webapp}/users/1/page")[1] == page
    assert http("GET", f"{webapp}/users/404")[0] == 404
    assert http("POST", f"{webapp}/users/1/name", {"nom": "x"})[0] == 400

    status, job = http("POST", f"{webapp}/users/1/name", {"name": "Ada Lovelace"})
    assert status == 202
    assert job["status"] == "queued"

    def renamed() -> bool:
        return bool(http("GET", f"{webapp}/users/1")[1]["name"] == "Ada Lovelace")

    def worker_alive() -> str:
        return (tmp_path / "worker.log").read_text()

    deadline = time.monotonic() + 60  # a worker starting on a loaded machine takes a while
    while not renamed():
        assert time.monotonic() < deadline, f"user 1 never renamed; worker log:\n{worker_alive()}"
        time.sleep(0.1)

    # the page, cached on the cluster, is invalidated by the same event; the worker applies
    # each manager's share in its own lane, so the cluster's may land a moment after the user's
    def page_renamed() -> bool:
        return bool(http("GET", f"{webapp}/users/1/page")[1]["title"] == "Ada Lovelace's page")

    while not page_renamed():
        assert time.monotonic() < deadline, f"page 1 never renamed; worker log:\n{worker_alive()}"
        time.sleep(0.1)
    status, new_page = http("GET", f"{webapp}/users/1/page")
    assert new_page["title"] == "Ada Lovelace's page"
    assert new_page["computed_at"] > page["computed_at"]
    # user 2 was not touched
    assert http("GET", f"{webapp}/users/2")[1]["name"] == "Grace"
