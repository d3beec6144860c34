"""Cluster tier: a real kube-apiserver + etcd for the whole session (see kube_apiserver.py).

Build the binaries once with `scripts/kube-binaries.sh`. Without them the tier is skipped on a
laptop, but fails under CI (env CI set), so a broken cache can never turn into a green run.
When a test here fails, the tails of the kube-apiserver and etcd logs are added to its report, and
so are the logs registered through the `process_logs` fixture (e.g. the KSQL operator's).

`helm` (the pinned Helm, `make helm-tool`) and `spark_crds` (the Spark Operator CRDs from
../shared/schemas/spark-operator/) follow the same rule: skipped on a laptop when missing, failed under CI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.cluster.kube_apiserver import (
    BIN_DIR,
    HELM_BIN,
    Helm,
    KubeAPIServer,
    helm_missing,
    missing_binaries,
    start_kube_apiserver,
)
from tests.support.paths import SHARED

SPARK_CRD_FILES = tuple(SHARED / "schemas" / "spark-operator" / f"sparkoperator.k8s.io_{plural}.yaml"
                        for plural in ("sparkapplications", "scheduledsparkapplications"))

_servers: list[KubeAPIServer] = []
# name -> callable returning a log tail; added to the report of a failing test while registered
_process_logs: dict[str, Callable[[], str]] = {}
# what -> seconds, printed at the end of the run (e.g. the Spark Operator tests' share of the tier)
_timings: dict[str, float] = {}


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    """etcd + kube-apiserver on free 127.0.0.1 ports; `.kubeconfig` (admin), `.url`, `.admin_token`,
    `.ca_file`, `.api_client()`, `.kubectl()`, `.service_account_kubeconfig(ns, name)`."""
    missing = missing_binaries()
    if missing:
        _skip_or_fail(f"missing {', '.join(p.name for p in missing)} in {BIN_DIR}: "
                      "run scripts/kube-binaries.sh (or set KUBE_BIN_DIR)")
    server = start_kube_apiserver(tmp_path_factory.mktemp("kube"))
    _servers.append(server)
    try:
        yield server
    finally:
        _servers.remove(server)
        server.stop()


@pytest.fixture(scope="session")
def helm(kube_apiserver: KubeAPIServer, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The pinned Helm (Helm 4: server-side apply) with the admin kubeconfig of `kube_apiserver`."""
    if helm_missing():
        _skip_or_fail(f"missing {HELM_BIN}: run `make helm-tool` (or set HELM_BIN)")
    return Helm(HELM_BIN, kube_apiserver.kubeconfig, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def spark_crds(kube_apiserver: KubeAPIServer) -> list[str]:
    """The Spark Operator 2.5.2 CRDs (SparkApplication, ScheduledSparkApplication), Established."""
    missing = [p for p in SPARK_CRD_FILES if not p.exists()]
    if missing:
        _skip_or_fail(f"missing {', '.join(map(str, missing))}")
    return kube_apiserver.apply_crds(SPARK_CRD_FILES)


@pytest.fixture(scope="session")
def process_logs() -> dict[str, Callable[[], str]]:
    """Register `name -> log tail callable` (and remove it when the process is gone): the tail is added
    to the report of every test that fails meanwhile."""
    return _process_logs


@pytest.fixture(scope="session")
def tier_timings() -> dict[str, float]:
    """Record `what -> seconds`: printed in the terminal summary of the run."""
    return _timings


def pytest_terminal_summary(terminalreporter) -> None:
    for what, seconds in _timings.items():
        terminalreporter.write_line(f"cluster tier: {what}: {seconds:.1f}s")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    report = yield
    if report.failed:
        for name, tail in list(_process_logs.items()):
            try:
                text = tail()
            except Exception as error:  # a report must never fail because a log is gone
                text = f"(log unavailable: {error!r})"
            report.sections.append((f"{name} (log tail)", text))
    if report.failed and _servers and "kube_apiserver" in getattr(item, "fixturenames", ()):
        report.sections.append(("kube-apiserver / etcd logs (tail)", _servers[-1].logs()))
    return report


def pytest_report_header(config: pytest.Config) -> str:
    missing = missing_binaries()
    state = "present" if not missing else f"MISSING {', '.join(p.name for p in missing)}"
    helm_state = "present" if not helm_missing() else "MISSING"
    return f"kube binaries ({BIN_DIR}): {state}; helm ({HELM_BIN}): {helm_state}"
