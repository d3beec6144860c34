"""The production server: gunicorn with webapp.gunicorn_conf (what the image runs), two workers, each
with exactly one cache consumer thread in the shared group, over the real broker and redis-server."""

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


def test_gunicorn_serves_with_one_consumer_per_worker(tmp_path, kafka_broker, redis_server, schema_registry):
    ensure_topics(kafka_broker)
    url = db_url(redis_server)
    flush(url)
    port = free_port()
    group = f"webapp-gunicorn-{new_id('g')}"
    env = _env(REDIS_URL=url, SECRET_KEY=SECRET, KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap,
               SCHEMA_REGISTRY_URL=schema_registry.url, CONSUMER_GROUP=group, PORT=str(port),
               BIND_HOST="127.0.0.1", WEB_WORKERS="2", WEB_THREADS="2", LOG_LEVEL="INFO")
    server = ServerProcess("gunicorn", [sys.executable, "-m", "gunicorn", "-c", "python:webapp.gunicorn_conf"],
                           tmp_path / "gunicorn.log", env=env, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_until(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 60, "answering /healthz")
        customer = new_id("gu")
        produce_json(kafka_broker.bootstrap, [consolidated(customer, first_name="Gunicorn")])
        wait_until(lambda: requests.get(f"{base}/api/customers/{customer}", timeout=5).status_code == 200, 60,
                   "the record through a worker's consumer")
        wait_until(lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 200, 60, "ready")

        admin = kafka_broker.admin()  # kept referenced while its futures are pending

        def members() -> int:
            (future,) = admin.describe_consumer_groups([group]).values()
            return len(future.result(10).members)

        wait_until(lambda: members() == 2, 60, "both workers' consumers in the group")
        page = requests.get(base, params={"q": "gunicorn"}, timeout=5)
        assert page.status_code == 200 and "Gunicorn" in page.text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(40) == 0
        log = server.log_path.read_text()
        assert log.count("assigned dom.") >= 2, server.log_tail()
        assert "Traceback" not in log, server.log_tail()
        assert "Control socket" not in log  # nothing written under $HOME (read-only in the pod)
    finally:
        server.stop()


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
