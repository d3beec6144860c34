"""Each entry point this file covers (the Spark jobs, train, evaluate, ``python -m webapp``) ends on an
unreachable or misconfigured dependency with ONE line on stderr naming the dependency, the address it
tried and the setting that points there, and a non-zero exit; never a traceback.

The Spark cases fail before a JVM starts (the checks in spark/preflight.py), so each costs a Python
start, not a Spark session. Unreachable addresses are free local ports nobody listens on."""

from __future__ import annotations

import http.server
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from schemas import topics
from schemas.serde import registry_client
from spark.preflight import DependencyError
from spark.registry import WriterSchemas
from tests.support.paths import REPO, SPARK_JARS
from tests.support.procs import ServerProcess, free_port, running

STREAMING = ("bronze", "silver", "gold", "score")
NEEDS_KAFKA_AND_REGISTRY = ("bronze", "score")


def _run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SPARK_", "KAFKA_", "SCHEMA_", "DELTA_", "CHECKPOINT_", "REDIS_", "APP_",
                                 "SECRET_", "STARTUP_"))}
    return subprocess.run([sys.executable, *argv], cwd=REPO, env={**base, **env}, capture_output=True, text=True,
                          timeout=timeout)


def _job(job: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return _run(["-m", f"spark.jobs.{job}", *args], {"SPARK_JARS_DIR": str(SPARK_JARS), "STARTUP_WAIT_S": "1", **env})


def one_line(done: subprocess.CompletedProcess, *expected: str) -> str:
    """The run failed (exit != 0) with exactly one line on stderr holding every expected fragment."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def reachable(kafka_broker, schema_registry, tmp_path) -> dict[str, str]:
    """Settings where every dependency answers; each case breaks one."""
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "SCHEMA_REGISTRY_URL": schema_registry.url,
            "DELTA_ROOT": str(tmp_path / "delta")}


@pytest.fixture(scope="module")
def not_a_registry() -> Iterator[str]:
    """An HTTP server that answers, but not like a Schema Registry (a URL pointing at the wrong service)."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b"<html>not here</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


# ---- Spark jobs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("job", NEEDS_KAFKA_AND_REGISTRY)
def test_kafka_unreachable_is_one_line_naming_the_address_and_setting(job, reachable):
    address = f"127.0.0.1:{free_port()}"
    line = one_line(_job(job, {**reachable, "KAFKA_BOOTSTRAP_SERVERS": address}),
                    f"{job}: Kafka unreachable at {address} (KAFKA_BOOTSTRAP_SERVERS)", "Connection refused")
    print(line)


def test_kafka_host_that_does_not_resolve_says_so(reachable):
    one_line(_job("bronze", {**reachable, "KAFKA_BOOTSTRAP_SERVERS": "kafka.invalid:9092"}),
             "bronze: Kafka unreachable at kafka.invalid:9092 (KAFKA_BOOTSTRAP_SERVERS)", "resolve")


@pytest.mark.parametrize("job", NEEDS_KAFKA_AND_REGISTRY)
def test_schema_registry_unreachable_is_one_line_naming_the_address_and_setting(job, reachable):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line(_job(job, {**reachable, "SCHEMA_REGISTRY_URL": url}),
                    f"{job}: Schema Registry unreachable at {url} (SCHEMA_REGISTRY_URL)", "refused")
    print(line)


def test_a_url_that_is_not_a_schema_registry_is_named(reachable, not_a_registry):
    one_line(_job("bronze", {**reachable, "SCHEMA_REGISTRY_URL": not_a_registry}),
             f"bronze: Schema Registry unusable at {not_a_registry} (SCHEMA_REGISTRY_URL)", "HTTP 404")


@pytest.mark.parametrize("job", [*STREAMING, "train"])
def test_delta_root_that_cannot_be_created_is_one_line(job, reachable, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    root = str(blocker / "delta")
    one_line(_job(job, {**reachable, "DELTA_ROOT": root}),
             f"{job}: Delta root unusable at {root} (DELTA_ROOT)", "is not a directory")


def test_delta_root_on_a_filesystem_that_refuses_writes_is_one_line(reachable):
    # /proc refuses new entries even to root, unlike a chmod'ed directory.
    one_line(_job("silver", {**reachable, "DELTA_ROOT": "/proc/marketing-engine/delta"}),
             "silver: Delta root unusable at /proc/marketing-engine/delta (DELTA_ROOT)", "not writable")


def test_checkpoint_root_is_checked_too(reachable, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line(_job("gold", {**reachable, "CHECKPOINT_ROOT": str(blocker / "ckpt")}),
             f"gold: checkpoint root unusable at {blocker / 'ckpt'} (CHECKPOINT_ROOT)")


def test_train_and_evaluate_name_the_missing_silver_table(tmp_path):
    root = tmp_path / "delta"
    root.mkdir()
    missing = f"{root}/silver/customers"
    for job, args in (("train", ()), ("evaluate", ("--ground-truth", str(tmp_path / "truth.csv")))):
        one_line(_job(job, {"DELTA_ROOT": str(root)}, *args),
                 f"{job}: Delta table missing at {missing} (DELTA_ROOT)", "run the bronze and silver jobs first")


def test_evaluate_names_the_missing_ground_truth(tmp_path):
    root = tmp_path / "delta"
    for table in ("customers", "orders", "activations"):
        (root / "silver" / table / "_delta_log").mkdir(parents=True)
    truth = tmp_path / "truth.csv"
    one_line(_job("evaluate", {"DELTA_ROOT": str(root)}, "--ground-truth", str(truth)),
             f"evaluate: ground truth missing at {truth} (--ground-truth)", "python -m seed --ground-truth")


@pytest.mark.parametrize(("variable", "value"), [
    ("SCHEMA_REGISTRY_URL", "registry:8081"),
    ("KAFKA_BOOTSTRAP_SERVERS", "redpanda"),
    ("TRIGGER_INTERVAL", "soon"),
    ("SPARK_MASTER", "locale[2]"),
    ("STARTUP_WAIT_S", "-1"),
])
def test_a_malformed_setting_is_one_line_naming_the_variable(variable, value):
    one_line(_job("bronze", {variable: value}), f"bronze: {variable}={value!r} is invalid")


def test_registry_going_away_after_the_start_checks_is_a_dependency_error_not_a_transport_traceback():
    # What bronze's start (preload) and every batch (resolve) call; before, a raw httpx ConnectError.
    url = f"http://127.0.0.1:{free_port()}"
    writers = WriterSchemas(registry_client(url, **{"max.retries": 0}), url, "SCHEMA_REGISTRY_URL")
    with pytest.raises(DependencyError) as failed:
        writers.preload(topics.ORDER_PLACED)
    assert str(failed.value).startswith(f"Schema Registry unreachable at {url} (SCHEMA_REGISTRY_URL): ")
    with pytest.raises(DependencyError):
        writers.resolve(topics.ORDER_PLACED, [1])


# ---- web UI -----------------------------------------------------------------------------------------------------


def _webapp(env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run(["-m", "webapp"], {"CACHE_CONSUMER_ENABLED": "false", "PORT": str(free_port()),
                                   "BIND_HOST": "127.0.0.1", "STARTUP_WAIT_S": "1", **env}, timeout=60)


def test_webapp_with_redis_unreachable_is_one_line_without_the_password():
    port = free_port()
    done = _webapp({"REDIS_URL": f"redis://:hunter2-secret@127.0.0.1:{port}/3"})
    line = one_line(done, f"webapp: Redis unreachable at redis://127.0.0.1:{port}/3 (REDIS_URL)", "STARTUP_WAIT_S")
    assert "hunter2" not in done.stderr
    print(line)


def test_webapp_with_a_password_redis_refuses_fails_at_once_naming_the_setting(tmp_path):
    port, password = free_port(), secrets.token_urlsafe(12)
    # Its own redis-server: the session's has no password, and redis-py shrugs off AUTH against one.
    server = ServerProcess("redis-auth", [shutil.which("redis-server") or "redis-server", "--port", str(port),
                                          "--bind", "127.0.0.1", "--save", "", "--requirepass", password],
                           tmp_path / "redis.log")
    with running(server):
        client = redis.Redis(port=port, password=password, socket_timeout=1)
        server.wait_until(client.ping, 20, "answering PING")
        client.close()
        url = f"redis://127.0.0.1:{port}/0"
        started = time.monotonic()
        done = _webapp({"REDIS_URL": url, "REDIS_PASSWORD": "wrong", "STARTUP_WAIT_S": "30"})
        one_line(done, f"webapp: Redis at {url} refused the connection (REDIS_PASSWORD / REDIS_URL)")
        assert time.monotonic() - started < 20, "a refused password is final: no waiting for STARTUP_WAIT_S"


def test_webapp_with_a_malformed_redis_url_names_the_variable():
    one_line(_webapp({"REDIS_URL": "localhost:6379"}), "webapp: REDIS_URL='localhost:6379' is invalid")


def test_a_job_with_every_dependency_reachable_gets_past_the_checks(reachable, tmp_path):
    """The other side of the cases above: the same checks pass against the real broker and the registry
    double, so the failures are theirs (the job then stops at the first thing that needs Spark:
    missing jars, asked for on purpose here)."""
    done = _job("bronze", {**reachable, "SPARK_JARS_DIR": str(tmp_path)})
    one_line(done, f"bronze: no jars in {tmp_path}")
    assert Path(reachable["DELTA_ROOT"]).parent.is_dir()
