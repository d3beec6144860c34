"""ksqlDB's probes stay green while its command runner executes a long command (issue 13, defect 3).

On a real ksqlDB 0.29 a CREATE OR REPLACE took ~38 s, and all that time /healthcheck answered 503 with
`commandRunner` unhealthy while /info kept answering. So no probe may use /healthcheck, and liveness must
tolerate minutes, not seconds, of a busy (or slowly starting) server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests.chart import by_kind, render

MINUTES = 60


@pytest.fixture(scope="module")
def ksqldb() -> dict[str, Any]:
    (deployment,) = [d for d in by_kind(render(()), "Deployment") if d["metadata"]["name"].endswith("-ksqldb")]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "ksqldb"]
    return container


def budget(probe: dict[str, Any]) -> int:
    """Seconds of consecutive failures before the kubelet acts (Kubernetes' defaults where unset)."""
    return probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


def test_no_probe_uses_healthcheck(ksqldb):
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = ksqldb[kind]
        assert probe.get("httpGet", {}).get("path") != "/healthcheck", kind


def test_readiness_is_info_which_answers_while_the_command_runner_is_busy(ksqldb):
    assert ksqldb["readinessProbe"]["httpGet"]["path"] == "/info"
    assert ksqldb["readinessProbe"]["httpGet"]["port"] == "http"


def test_liveness_tolerates_minutes_long_commands(ksqldb):
    liveness = ksqldb["livenessProbe"]
    assert "httpGet" in liveness or "tcpSocket" in liveness
    assert budget(liveness) >= 3 * MINUTES, liveness
    assert liveness.get("timeoutSeconds", 1) >= 5, "a busy JVM may answer slowly"


def test_a_startup_probe_covers_a_slow_jvm_start(ksqldb):
    startup = ksqldb["startupProbe"]
    assert startup["httpGet"]["path"] == "/info"
    assert budget(startup) >= 3 * MINUTES, startup
