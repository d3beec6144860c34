"""`kopf run --standalone -n NS -m operators.ksql` (the chart's command) as a real process, with each of its
dependencies missing, unreachable or misconfigured: one line on stderr naming the dependency, the address
tried and the setting that points there, a non-zero exit, no traceback (issue 13, defect 4).

The Kubernetes API here is a STUB that answers only `GET /version` (a real kube-apiserver belongs to the
cluster tier): enough for the operator's start-up check to pass, so that the ksqlDB cases are reached.
ksqlDB is the TEST DOUBLE (tests/support/ksqldb_double.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.ksqldb_double import KsqlDbDouble
from tests.support.paths import REPO
from tests.support.procs import free_port

KOPF = Path(os.environ.get("KOPF_BIN") or REPO / ".venv" / "bin" / "kopf")
COMMAND = [str(KOPF), "run", "--standalone", "-n", "default", "-m", "operators.ksql"]


class _VersionOnly(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/version":
            body = json.dumps({"major": "1", "minor": "36", "gitVersion": "v1.36.1", "gitCommit": "stub",
                               "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go",
                               "compiler": "gc", "platform": "linux/amd64"}).encode()
            self.send_response(200)
        else:
            body = b'{"kind":"Status","code":404}'
            self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kube_stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _VersionOnly)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u", "namespace": "default"}}],
    }))
    return path


def run(tmp_path: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    if not os.access(KOPF, os.X_OK):
        pytest.fail(f"{KOPF} is missing: `make venv` installs kopf", pytrace=False)
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),  # no ~/.kube
                   "PYTHONPATH": str(REPO), "KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": "",
                   "SCHEMA_REGISTRY_URL": "", **env}
    return subprocess.run(COMMAND, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output and "Error:" not in output.replace("ksql-operator:", ""), output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ksql-operator: "), output
    return lines[0]


def test_without_cluster_credentials(tmp_path):
    line = one_line(run(tmp_path, KSQLDB_URL="http://127.0.0.1:9"))
    assert "Kubernetes API: no credentials" in line and "KUBECONFIG" in line and "~/.kube/config" in line


def test_kubernetes_api_unreachable(tmp_path):
    port = free_port()
    config = kubeconfig(tmp_path, f"http://127.0.0.1:{port}")
    line = one_line(run(tmp_path, KUBECONFIG=str(config), KSQLDB_URL="http://127.0.0.1:9"))
    assert f"Kubernetes API at http://127.0.0.1:{port}" in line and f"{config} (KUBECONFIG)" in line
    assert line.endswith("unreachable: connection refused")


def test_ksqldb_unreachable(tmp_path, kube_stub):
    port = free_port()
    started = time.monotonic()
    proc = run(tmp_path, KUBECONFIG=str(kubeconfig(tmp_path, kube_stub)), KSQLDB_URL=f"http://127.0.0.1:{port}",
               KSQL_STARTUP_TIMEOUT_SECONDS="2")
    line = one_line(proc)
    assert f"ksqlDB at http://127.0.0.1:{port} (KSQLDB_URL) unreachable for 2s" in line
    assert "KSQL_STARTUP_TIMEOUT_SECONDS" in line and line.endswith("connection refused")
    assert time.monotonic() - started >= 2, "it waited for ksqlDB (which may start after the operator)"


def test_ksqldb_url_pointing_at_something_else(tmp_path, kube_stub):
    # the URL answers, but is no ksqlDB (here: the Kubernetes stub, 404 on /info): no waiting, one line
    line = one_line(run(tmp_path, KUBECONFIG=str(kubeconfig(tmp_path, kube_stub)), KSQLDB_URL=kube_stub))
    assert f"ksqlDB at {kube_stub} (KSQLDB_URL)" in line and "not a ksqlDB REST endpoint" in line


def test_invalid_setting_exits_2(tmp_path):
    proc = run(tmp_path, KSQLDB_URL="http://127.0.0.1:9", KSQL_DRIFT_INTERVAL_SECONDS="-1")
    line = one_line(proc)
    assert proc.returncode == 2 and "KSQL_DRIFT_INTERVAL_SECONDS" in line


def test_with_its_dependencies_there_it_passes_the_checks_and_runs(tmp_path, kube_stub):
    """The control: the same command with Kubernetes (stub) and ksqlDB (double) answering starts kopf."""
    double = KsqlDbDouble().start()
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
                   "KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": "", "SCHEMA_REGISTRY_URL": "",
                   "KUBECONFIG": str(kubeconfig(tmp_path, kube_stub)), "KSQLDB_URL": double.url}
    log = tmp_path / "operator.log"
    with log.open("w") as out:
        proc = subprocess.Popen(COMMAND, env=environment, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while "Activity 'startup' succeeded" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        text = log.read_text()
        assert "ksqlDB 0.29.0 at " + double.url in text and "Activity 'startup' succeeded" in text, text
        assert "ksql-operator:" not in text
        assert any(r["path"] == "/info" for r in double.requests)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        double.stop()
