"""Cluster tier: a real kube-apiserver + etcd for the whole session (see kube_apiserver.py).

Build the binaries once with `scripts/kube-binaries.sh`. Without them the tier is skipped on a
laptop, but fails under CI (env CI set), so a broken cache can never turn into a green run.
When a test here fails, the tails of the kube-apiserver and etcd logs are added to its report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cluster.kube_apiserver import BIN_DIR, KubeAPIServer, missing_binaries, start_kube_apiserver

_servers: list[KubeAPIServer] = []


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIServer]:
    """etcd + kube-apiserver on free 127.0.0.1 ports; `.kubeconfig` (admin), `.url`, `.admin_token`,
    `.ca_file`, `.api_client()`, `.kubectl()`, `.service_account_kubeconfig(ns, name)`."""
    missing = missing_binaries()
    if missing:
        message = (f"missing {', '.join(p.name for p in missing)} in {BIN_DIR}: "
                   "run scripts/kube-binaries.sh (or set KUBE_BIN_DIR)")
        if os.environ.get("CI"):
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(message)
    server = start_kube_apiserver(tmp_path_factory.mktemp("kube"))
    _servers.append(server)
    try:
        yield server
    finally:
        _servers.remove(server)
        server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    report = yield
    if report.failed and _servers and "kube_apiserver" in getattr(item, "fixturenames", ()):
        report.sections.append(("kube-apiserver / etcd logs (tail)", _servers[-1].logs()))
    return report


def pytest_report_header(config: pytest.Config) -> str:
    missing = missing_binaries()
    state = "present" if not missing else f"MISSING {', '.join(p.name for p in missing)}"
    return f"kube binaries ({BIN_DIR}): {state}"
