"""The app image's entry points, each run as the chart runs it (command, env, uid, read-only root
filesystem, no capabilities, no privilege escalation, memory limit, emptyDir /tmp): the web UI and the
cache feeder against a real redis-server with a password and the real broker; the KSQL operator without
cluster credentials; the seed's dry run."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.engines.test_webapp_helpers import consolidated, ensure_topics, new_id, produce_json, wait_until
from tests.images.conftest import BuiltImage, workload
from tests.support import podman
from tests.support.paths import REPO
from tests.support.procs import free_port
from tests.support.redis_server import RedisServer, start_redis

REDIS_PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of its own that requires a password, as the chart's (requirepass)."""
    server = start_redis(tmp_path_factory.mktemp("redis-auth"))
    server.client().config_set("requirepass", REDIS_PASSWORD)
    try:
        yield server
    finally:
        server.stop()


def test_web_and_feeder_serve_their_health_endpoints_and_a_record_from_kafka(
        tmp_path, engine: podman.Engine, app_image: BuiltImage, rendered_chart, kafka_broker,
        redis_with_password, schema_registry):
    """Both Deployments' containers, as rendered: the feeder consumes the broker and writes Redis, the web
    UI (gunicorn) reads it; their health endpoints answer; SIGTERM ends both with 0 and no traceback."""
    ensure_topics(kafka_broker)
    web_port, health_port = free_port(), free_port()
    common = {
        "REDIS_URL": f"redis://127.0.0.1:{redis_with_password.port}/0",
        "REDIS_PASSWORD": REDIS_PASSWORD,  # secretKeyRef in the chart
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "SCHEMA_REGISTRY_URL": schema_registry.url,
        "CONSUMER_GROUP": f"images-{new_id('g')}",
        "BIND_HOST": "127.0.0.1",  # the host's network: keep the ports off other interfaces
    }
    web_spec, web = workload(rendered_chart, "web")
    feeder_spec, feeder = workload(rendered_chart, "web-feeder")
    web_env = {**common, "SECRET_KEY": secrets.token_urlsafe(24), "PORT": str(web_port),
               "REST_PROXY_URL": "http://127.0.0.1:9"}
    feeder_env = {**common, "FEEDER_HEALTH_PORT": str(health_port)}
    web_name, feeder_name = podman.unique_name("me-web"), podman.unique_name("me-feeder")
    web_proc = podman.start(engine, podman.container_argv(web_spec, web, image=app_image.tag, engine=engine,
                                                          name=web_name, env=web_env),
                            web_name, tmp_path / "web.log")
    feeder_proc = podman.start(engine, podman.container_argv(feeder_spec, feeder, image=app_image.tag, engine=engine,
                                                             name=feeder_name, env=feeder_env),
                               feeder_name, tmp_path / "feeder.log")
    base = f"http://127.0.0.1:{web_port}"
    try:
        web_proc.wait_until(lambda: requests.get(f"{base}/healthz", timeout=2).json() == {"status": "ok"}, 120,
                            "answering /healthz")
        feeder_proc.wait_until(lambda: requests.get(f"http://127.0.0.1:{health_port}/healthz", timeout=2).ok, 120,
                               "answering /healthz")
        customer = new_id("img")
        produce_json(kafka_broker.bootstrap, [consolidated(customer, first_name="Imaged")])
        wait_until(lambda: requests.get(f"{base}/api/customers/{customer}", timeout=5).status_code == 200, 90,
                   "the record through the feeder container")
        wait_until(lambda: requests.get(f"{base}/readyz", timeout=5).status_code == 200, 60, "the web UI ready")
        ready = requests.get(f"http://127.0.0.1:{health_port}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"], ready.text
        page = requests.get(base, params={"q": "imaged"}, timeout=5)
        assert page.status_code == 200 and "Imaged" in page.text
        codes = {proc.name: proc.terminate() for proc in (web_proc, feeder_proc)}
        logs = {proc.name: proc.log_path.read_text(errors="replace") for proc in (web_proc, feeder_proc)}
        assert codes == {web_name: 0, feeder_name: 0}, logs
        for log in logs.values():
            assert "Traceback" not in log, log[-3000:]
            assert "Read-only file system" not in log, log[-3000:]
        assert "holds the write lease" in logs[feeder_name]
    finally:
        web_proc.stop()
        feeder_proc.stop()


def test_the_ksql_operator_without_cluster_credentials_fails_in_one_line(
        engine: podman.Engine, app_image: BuiltImage, rendered_chart, container_name):
    spec, operator = workload(rendered_chart, "ksql-operator")
    assert operator["command"][:2] == ["kopf", "run"] and "operators.ksql" in operator["command"]
    argv = podman.container_argv(spec, operator, image=app_image.tag, engine=engine, name=container_name,
                                 env={"WATCH_NAMESPACE": "marketing-engine"})  # a fieldRef in the chart
    done = podman.run_to_end(engine, argv, container_name, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "Traceback" not in output, output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [line for line in lines if line.startswith("ksql-operator: ")] and len(lines) == 1, output
    assert lines[0].startswith("ksql-operator: Kubernetes API: no credentials: not in a cluster ("), lines[0]
    assert "no usable kubeconfig at ~/.kube/config (set KUBECONFIG)" in lines[0], lines[0]


def test_the_seed_dry_run_prints_what_the_repository_prints_and_writes_its_ground_truth(
        tmp_path, engine: podman.Engine, app_image: BuiltImage, rendered_chart, container_name):
    """The seed Job's container with --dry-run: the same events as `make seed-dry-run` with the same
    settings (a deterministic simulation), and the ground truth on the Delta volume, as the pod's uid."""
    spec, seed = workload(rendered_chart, "seed")
    assert seed["command"] == ["python", "-m", "seed"]
    env = {"SEED_CUSTOMERS": "30", "SEED_DAYS": "20", "REST_PROXY_URL": "http://127.0.0.1:9"}
    delta = podman.prepare_volume(tmp_path / "delta", spec)
    args = ["--dry-run", "--sample", "25"]
    argv = podman.container_argv(spec, {**seed, "args": args}, image=app_image.tag, engine=engine,
                                 name=container_name, env=env, volumes={"delta": delta})
    done = podman.run_to_end(engine, argv, container_name, timeout=180)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(events) == 25 and {e["topic"] for e in events} >= {"dom.customer.profile.upsert.v1"}
    assert "seed: dry run: simulated (nothing published)" in done.stderr and "Traceback" not in done.stderr

    chart_env = {e["name"]: e["value"] for e in seed["env"] if "value" in e}
    host_truth = tmp_path / "host-truth.csv"
    here = subprocess.run([sys.executable, "-m", "seed", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=180, env={"PATH": "/usr/bin:/bin", **chart_env, **env,
                                            "SEED_GROUND_TRUTH": str(host_truth)})
    assert here.returncode == 0, here.stderr
    assert done.stdout == here.stdout

    truth = Path(delta, chart_env["SEED_GROUND_TRUTH"].removeprefix("/data/delta/"))
    assert truth.read_text() == host_truth.read_text() and truth.read_text().count("\n") > 30
    assert truth.stat().st_uid == spec["securityContext"]["runAsUser"]
