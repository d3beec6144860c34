"""The production processes as the chart runs them: gunicorn with webapp.gunicorn_conf (two workers that
only read Redis) and ``python -m webapp.feeder`` (the cache's one writer), over the real broker and
redis-server; and their one-line failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import requests

from tests.engines.test_webapp_helpers import (
    SECRET,
    consolidated,
    db_url,
    ensure_topics,
    flush,
    new_id,
    produce_json,
    wait_until,
)
from tests.support.paths import REPO
from tests.support.procs import ServerProcess, free_port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "SECRET_", "REDIS_", "KAFKA_"))}
    env.update(extra)
    return env


def test_gunicorn_serves_what_the_feeder_process_writes(tmp_path, kafka_broker, redis_server, schema_registry):
    """The two processes of the chart: gunicorn (two workers, no consumer) and python -m webapp.feeder
    (the one writer, with its health endpoint); both end cleanly on SIGTERM."""
    ensure_topics(kafka_broker)
    url = db_url(redis_server)
    flush(url)
    port, health = free_port(), free_port()
    group = f"webapp-gunicorn-{new_id('g')}"
    env = _env(REDIS_URL=url, SECRET_KEY=SECRET, KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
               SCHEMA_REGISTRY_URL=schema_registry.url, CONSUMER_GROUP=group, PORT=str(port),
               FEEDER_HEALTH_PORT=str(health), BIND_HOST="127.0.0.1", WEB_WORKERS="2", WEB_THREADS="2",
               LOG_LEVEL="INFO")
    server = ServerProcess("gunicorn", [sys.executable, "-m", "gunicorn", "-c", "python:webapp.gunicorn_conf"],
                           tmp_path / "gunicorn.log", env=env, cwd=REPO)
    feeder = ServerProcess("feeder", [sys.executable, "-m", "webapp.feeder"], tmp_path / "feeder.log", env=env,
                           cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_until(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 60, "answering /healthz")
        feeder.wait_until(lambda: requests.get(f"http://127.0.0.1:{health}/healthz", timeout=2).ok, 60,
                          "the feeder answering /healthz")
        customer = new_id("gu")
        produce_json(kafka_broker.bootstrap, [consolidated(customer, first_name="Gunicorn")])
        wait_until(lambda: requests.get(f"{base}/api/customers/{customer}", timeout=5).status_code == 200, 60,
                   "the record through the feeder")
        wait_until(lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 200, 60, "ready")
        ready = requests.get(f"http://127.0.0.1:{health}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"], ready.text
        status = requests.get(f"http://127.0.0.1:{health}/status", timeout=5).json()
        assert status["state"] == "running" and status["group"] == group

        admin = kafka_broker.admin()  # kept referenced while its futures are pending
        (future,) = admin.describe_consumer_groups([group]).values()
        assert len(future.result(10).members) == 0, "no consumer-group members: the feeder assigns, gunicorn reads"
        page = requests.get(base, params={"q": "gunicorn"}, timeout=5)
        assert page.status_code == 200 and "Gunicorn" in page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert requests.get(f"{base}/insights", timeout=5).status_code == 200
        for proc in (server, feeder):
            proc.proc.send_signal(signal.SIGTERM)
            assert proc.proc.wait(40) == 0, proc.log_tail()
        for proc in (server, feeder):
            log = proc.log_path.read_text()
            assert "Traceback" not in log, proc.log_tail()
        assert "Control socket" not in server.log_path.read_text()  # nothing written under $HOME (read-only)
        assert "holds the write lease" in feeder.log_path.read_text()
    finally:
        server.stop()
        feeder.stop()


def test_the_feeder_with_a_dependency_unreachable_ends_in_one_line():
    port = free_port()
    redis_down = subprocess.run([sys.executable, "-m", "webapp.feeder"],
                                env=_env(REDIS_URL=f"redis://:pw@127.0.0.1:{port}/0", STARTUP_WAIT_S="1"), cwd=REPO,
                                capture_output=True, text=True, timeout=60)
    assert redis_down.returncode == 2
    assert redis_down.stderr.strip() == (
        f"webapp.feeder: Redis unreachable at redis://127.0.0.1:{port}/0 (REDIS_URL): "
        + redis_down.stderr.split("(REDIS_URL): ", 1)[1].strip())
    assert "pw" not in redis_down.stderr and redis_down.stderr.count("\n") == 1


def test_the_feeder_with_kafka_unreachable_ends_in_one_line(redis_server):
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "webapp.feeder"],
                            env=_env(REDIS_URL=redis_server.url, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}",
                                     STARTUP_WAIT_S="1"), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("webapp.feeder:")]
    assert len(lines) == 1 and lines[0].startswith(
        f"webapp.feeder: Kafka unreachable at 127.0.0.1:{port} (KAFKA_BOOTSTRAP_SERVERS): "), result.stderr
    assert lines[0].endswith("(waited 1s, STARTUP_WAIT_S)") and "Traceback" not in result.stderr
    bad = subprocess.run([sys.executable, "-m", "webapp.feeder"], env=_env(FEEDER_HEALTH_PORT="http"), cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("webapp.feeder: FEEDER_HEALTH_PORT='http' is invalid")


def test_gunicorn_refuses_production_without_a_secret_key_in_one_line():
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "python:webapp.gunicorn_conf"],
                            env=_env(APP_ENV="production"), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "SECRET_KEY" in result.stderr
    dev = subprocess.run([sys.executable, "-m", "webapp"], env=_env(APP_ENV="production"), cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert dev.returncode == 2 and dev.stderr.startswith("webapp: SECRET_KEY is not set")


def test_gunicorn_with_redis_unreachable_ends_in_one_line_before_any_worker():
    port = free_port()
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "python:webapp.gunicorn_conf"],
                            env=_env(SECRET_KEY=SECRET, REDIS_URL=f"redis://127.0.0.1:{port}/0", STARTUP_WAIT_S="1",
                                     PORT=str(free_port()), BIND_HOST="127.0.0.1"),
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Booting worker" not in result.stderr
    # gunicorn's own INFO banner comes first; the one problem line is ours.
    problems = [line for line in result.stderr.splitlines() if "[INFO]" not in line]
    assert len(problems) == 1, result.stderr
    assert problems[0].startswith(f"webapp: Redis unreachable at redis://127.0.0.1:{port}/0 (REDIS_URL): ")
    assert "Connection refused" in problems[0] and problems[0].endswith("(waited 1s, STARTUP_WAIT_S)")
