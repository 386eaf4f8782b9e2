"""docker-compose.yml checked against the project, since no Docker engine runs here: every
service's image, command and environment must match what the code and the README say."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
import yaml

import depcache
import depcache.cli
from depcache_celery import Settings
from depcache_celery.worker.monitoring import PORT_SETTING
from tests.support.servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]


def optional_dependencies() -> dict[str, str]:
    """pyproject.toml's extras: name -> its requirement list as written (tomllib is 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r"^([a-z][a-z0-9-]*) = (\[.*?\])$", section, flags=re.M | re.S))


COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
README = (ROOT / "README.md").read_text()

CLUSTER_NODES = ("redis-node-1", "redis-node-2", "redis-node-3")
OURS = ("worker", "webapp")  # built from this repository's Dockerfile, with the app's settings
BUILT = (*OURS, "cdc")  # every service built from it


def command(service: str) -> list[str]:
    raw = SERVICES[service]["command"]
    return shlex.split(raw) if isinstance(raw, str) else [str(part) for part in raw]


def environment(service: str) -> dict[str, str]:
    raw = SERVICES[service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def variables_the_code_reads() -> set[str]:
    """Environment variables read by depcache, depcache_celery and the examples: string literals
    in upper case, plus the names depcache_celery derives from its settings."""
    names: set[str] = set()
    for package in ("depcache", "depcache_celery", "examples"):
        for path in (ROOT / package).rglob("*.py"):
            names.update(re.findall(r"[\"']([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)[\"']", path.read_text()))
    names.update(f"DEPCACHE_{field.name.upper()}" for field in dataclasses.fields(Settings))
    names.add(PORT_SETTING.upper())
    return names


def test_the_expected_services_exist_and_depend_on_real_ones() -> None:
    expected = {"redis", *CLUSTER_NODES, "redis-cluster-init", "rabbitmq", "worker", "webapp"}
    expected |= {"postgres", "cdc", "prometheus", "grafana"}
    assert set(SERVICES) == expected
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on") or {}:
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
    published = [p.split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), f"a host port is published twice: {published}"
    for volume in (v.split(":")[0] for s in SERVICES.values() for v in s.get("volumes", [])):
        if volume.startswith("./"):  # a file of this repository, mounted
            assert (ROOT / volume).exists(), volume
        else:
            assert volume in (COMPOSE.get("volumes") or {}), volume


def test_third_party_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        if name in BUILT:
            continue
        image = service["image"]
        repository, _, tag = image.partition(":")
        assert repository in (
            "redis",
            "rabbitmq",
            "postgres",
            "prom/prometheus",
            "grafana/grafana",
        ), image
        assert re.match(r"v?\d", tag), f"{name}: pin the image's version ({image})"


def test_the_worker_healthcheck_is_the_canary() -> None:
    check = SERVICES["worker"]["healthcheck"]["test"]
    assert check[0] == "CMD"
    assert check[1] == "depcache"
    args = depcache.cli._parser().parse_args(check[2:])  # a real command of ours
    assert args.run.__name__ == "cmd_check"
    assert args.timeout <= 30
    env = environment("worker")
    assert env["DEPCACHE_SETUP"]  # what the check imports, as the worker does
    # the check must finish before Docker gives up on it
    seconds = int(SERVICES["worker"]["healthcheck"]["timeout"].rstrip("s"))
    assert seconds > args.timeout


def test_prometheus_scrapes_the_worker_and_grafana_shows_the_dashboard() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    [target] = job["static_configs"][0]["targets"]
    host, _, port = target.partition(":")
    assert host == "worker"
    assert port == environment("worker")["DEPCACHE_PROMETHEUS_PORT"]
    mounts = dict(v.split(":")[:2] for v in SERVICES["prometheus"]["volumes"])
    assert mounts["./deploy/prometheus/prometheus.yml"] in " ".join(command("prometheus"))
    grafana = dict(v.split(":")[:2] for v in SERVICES["grafana"]["volumes"])
    dashboard = grafana["./deploy/grafana/depcache.json"]
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/depcache.yml").read_text()
    )
    assert dashboard.startswith(provider["providers"][0]["options"]["path"] + "/")
    assert grafana["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    source = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    [datasource] = source["datasources"]
    assert urlsplit(datasource["url"]).hostname == "prometheus"
    assert str(urlsplit(datasource["url"]).port) == SERVICES["prometheus"]["ports"][0].split(":")[1]
    panels = json.loads((ROOT / "deploy/grafana/depcache.json").read_text())["panels"]
    assert {p["datasource"]["uid"] for p in panels if p["type"] != "row"} == {datasource["uid"]}


def test_our_image_is_built_from_the_dockerfile_with_real_extras() -> None:
    for name in BUILT:
        assert SERVICES[name]["build"] == ".", name
    dockerfile = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (\S+)", dockerfile, flags=re.MULTILINE):
        assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    installs = re.findall(r'pip install [^\n]*"\.\[([^\]]+)\]"', dockerfile)
    assert installs, "the Dockerfile installs the project with its extras"
    extras = optional_dependencies()
    for extra in installs[0].split(","):
        assert extra in extras, f"Dockerfile installs extra {extra!r}, not in pyproject.toml"
    # the commands of our services are installed by those extras
    wanted = " ".join(extras[e] for e in installs[0].split(",")).lower()
    assert "celery" in wanted
    assert "flask" in wanted
    assert "psycopg" in wanted  # depcache cdc


def test_every_variable_is_read_by_the_code_and_documented() -> None:
    read = variables_the_code_reads()
    for name in BUILT:
        for variable in environment(name):
            assert variable in read, f"{name}: {variable} is read by no code"
            assert f"`{variable}`" in README, f"{name}: {variable} is not in README.md"


def test_urls_point_at_the_services() -> None:
    rabbit = environment("rabbitmq")
    for name in OURS:
        env = environment(name)
        redis_url = urlsplit(env["REDIS_URL"])
        assert redis_url.hostname == "redis"
        assert redis_url.port == 6379
        pages = urlsplit(env["PAGES_REDIS_URL"])
        assert pages.hostname in CLUSTER_NODES
        assert str(pages.port) == _option(command(pages.hostname), "--port")
        assert env["PAGES_REDIS_CLUSTER"] == "true"
        broker = urlsplit(env["CELERY_BROKER_URL"])
        assert broker.scheme == "amqp"
        assert broker.hostname == "rabbitmq"
        assert broker.username == rabbit["RABBITMQ_DEFAULT_USER"]
        assert broker.password == rabbit["RABBITMQ_DEFAULT_PASS"]
        assert env["DEPCACHE_EXCHANGE"] == Settings().exchange
        # the values are valid for the code that reads them
        settings = Settings.from_conf({}, env)
        assert settings.queue == env["DEPCACHE_QUEUE"]
        config = depcache.RedisConfig(environ=env)
        assert config.url == env["REDIS_URL"]
        assert not config.cluster


def _option(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


# --- the Python commands, run as far as possible without the services ---------------------------

IMPORT_CHECK = """
import importlib, json, sys
import depcache, depcache_celery
from depcache_celery.worker.monitoring import prometheus_port

kind, module = sys.argv[1], sys.argv[2]
mod = importlib.import_module(module)
if kind == "celery":
    app = mod.app
    assert depcache_celery.install(app).app is app, "depcache_celery is not installed"
    app.loader.import_default_modules()  # what the worker does at startup (DEPCACHE_SETUP)
    app.finalize()
    settings = depcache_celery.Settings.from_conf(app.conf)
    print(json.dumps({
        "broker": app.conf.broker_url,
        "tasks": sorted(t for t in app.tasks if not t.startswith("celery.")),
        "queue": settings.queue,
        "prometheus_port": prometheus_port(app.conf),
        "managers": {
            name: [m.config.url, bool(getattr(m.config, "cluster", False)), m.config.prefix]
            for name, m in depcache.registered_managers().items()
        },
    }))
else:
    flask_app = mod.create_app()
    print(json.dumps({"rules": sorted(r.rule for r in flask_app.url_map.iter_rules())}))
"""


def _run_import_check(service: str, kind: str, module: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEPCACHE_", "DEP_CACHE_"))}
    env.update(environment(service))
    env["PYTHONPATH"] = str(ROOT)
    env["WEBAPP_DB"] = str(Path(tempfile.mkdtemp()) / "webapp.sqlite3")
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, kind, module],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,  # the image's WORKDIR holds examples/, as the project root does
        check=False,
    )
    assert result.returncode == 0, f"{service}: {module}:\n{result.stderr}"
    parsed: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return parsed


def test_the_worker_command_runs_a_real_app_with_the_setup_modules() -> None:
    args = command("worker")
    assert args[:2] == ["celery", "-A"]
    assert args[3] == "worker"
    info = _run_import_check("worker", "celery", args[2])
    env = environment("worker")
    assert info["broker"] == env["CELERY_BROKER_URL"]
    assert {"depcache.event", "depcache.invalidate", "webapp.rename_user"} <= set(info["tasks"])
    assert info["queue"] == env["DEPCACHE_QUEUE"]
    assert info["prometheus_port"] == int(env["DEPCACHE_PROMETHEUS_PORT"])
    assert f"{info['prometheus_port']}:{info['prometheus_port']}" in SERVICES["worker"]["ports"]
    assert info["managers"] == {
        "users": [env["REDIS_URL"], False, "webapp-users"],
        "pages": [env["PAGES_REDIS_URL"], True, "webapp-pages"],
    }


def test_the_webapp_command_serves_the_example_app() -> None:
    args = command("webapp")
    assert args[:2] == ["flask", "--app"]
    assert args[3] == "run"
    port = _option(args, "--port")
    assert _option(args, "--host") == "0.0.0.0"
    assert f"{port}:{port}" in SERVICES["webapp"]["ports"]
    info = _run_import_check("webapp", "flask", args[2])
    assert {"/users/<int:user_id>", "/users/<int:user_id>/page"} <= set(info["rules"])


def test_the_cdc_command_streams_the_postgres_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """``depcache cdc`` as the cdc service runs it: its options parse, its DSN names the
    postgres service's database and user, its broker and exchange are the worker's."""
    from depcache.cli import _parser  # noqa: PLC0415 - the command's own parser
    from depcache_celery.cdc.cli import cmd_cdc, config_from_args  # noqa: PLC0415

    args = command("cdc")
    assert args[:2] == ["depcache", "cdc"]
    env = environment("cdc")
    for variable in list(os.environ):
        if variable.startswith(("DEPCACHE_", "CELERY_")):
            monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    parsed = _parser().parse_args(args[1:])
    assert parsed.run is cmd_cdc
    config = config_from_args(parsed)
    dsn = urlsplit(config.dsn)
    postgres = environment("postgres")
    assert dsn.hostname == "postgres"
    assert (dsn.username, dsn.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    assert dsn.path == f"/{postgres['POSTGRES_DB']}"
    assert str(dsn.port) in SERVICES["postgres"]["ports"][0]
    assert config.broker_url == environment("worker")["CELERY_BROKER_URL"]
    assert config.settings.exchange == environment("worker")["DEPCACHE_EXCHANGE"]
    assert env["DEPCACHE_QUEUE"] == environment("worker")["DEPCACHE_QUEUE"]
    port = _option(args, "--metrics-port")
    assert f"{port}:{port}" in SERVICES["cdc"]["ports"]
    assert set(SERVICES["cdc"]["depends_on"]) == {"postgres", "rabbitmq"}


def test_the_postgres_settings_start_a_server(request: pytest.FixtureRequest) -> None:
    """The postgres service's ``-c`` settings (logical decoding) start this machine's server."""
    from tests.support.pg_server import postgres_server  # noqa: PLC0415

    request.getfixturevalue("logical_postgres")  # PostgreSQL installed, or skip/fail as it does
    args = command("postgres")
    assert args[0] == "postgres"
    settings = dict(args[index + 1].split("=", 1) for index, arg in enumerate(args) if arg == "-c")
    assert settings["wal_level"] == "logical"
    with postgres_server(**settings) as server, psycopg.connect(server.dsn()) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        row = conn.execute("SHOW max_slot_wal_keep_size").fetchone()
        assert row == (settings["max_slot_wal_keep_size"],)


# --- the Redis commands, run on this machine's redis-server ---------------------------------------


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="depcache-compose-") as path:
        yield Path(path)


def _local(args: list[str]) -> list[str]:
    """A service's redis-server arguments without its port (the test picks a free one)."""
    assert args[0] == "redis-server"
    rest = list(args[1:])
    if "--port" in rest:
        index = rest.index("--port")
        del rest[index : index + 2]
    return rest


def test_the_redis_commands_start_a_server_and_a_cluster(
    redis_url: str, workdir: Path, request: pytest.FixtureRequest
) -> None:
    """The servers' options are real: each command starts on the local redis-server, and the
    cluster init script's steps form a cluster whose nodes announce their service names."""
    request.getfixturevalue("standalone_servers")  # redis-server installed, or skip/fail as they do
    standalone = RedisServer(free_port(), workdir, *_local(command("redis"))).start()
    try:
        assert redis.Redis(port=standalone.port).ping()
    finally:
        standalone.stop()

    nodes: list[RedisServer] = []
    try:
        for name in CLUSTER_NODES:
            node_dir = workdir / name
            node_dir.mkdir()
            args = _local(command(name))
            assert _option(args, "--cluster-announce-hostname") == name
            node = RedisServer(free_port(), node_dir, *args)
            nodes.append(node.start())
        init = " ".join(command("redis-cluster-init"))
        for name in CLUSTER_NODES:
            assert f"$$(getent hosts {name} | cut -d' ' -f1):7000" in init
        assert "--cluster-replicas 0 --cluster-yes" in init
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create"),
                *(f"127.0.0.1:{n.port}" for n in nodes),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        # what clients are told: the service names (resolved inside the compose network)
        slots = redis.Redis(port=nodes[0].port, decode_responses=True).execute_command(  # type: ignore[no-untyped-call]
            "CLUSTER SLOTS"
        )
        announced = {str(slot_range[2][0]) for slot_range in slots}
        assert announced == set(CLUSTER_NODES), slots
    finally:
        for node in nodes:
            node.stop()
