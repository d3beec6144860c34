"""Every SparkApplication's driver stops its Python job through the preStop hook, within its grace period."""

from __future__ import annotations

import pytest

from spark import prestop, runtime
from tests.manifests.chart import by_kind, render


@pytest.mark.parametrize("driver_only", [True, False], ids=["driver-only", "executors"])
def test_driver_runs_the_prestop_hook_within_its_grace_period(driver_only):
    apps = by_kind(render((), ("pipeline.enabled=true", f"pipeline.driverOnly.enabled={str(driver_only).lower()}")),
                   "SparkApplication")
    assert len(apps) == 4
    for app in apps:
        driver = app["spec"]["driver"]
        command = driver["lifecycle"]["preStop"]["exec"]["command"]
        assert command == ["/opt/venv/bin/python", "-m", "spark.prestop"], app["metadata"]["name"]
        # the hook waits for a running batch to commit (BATCH_GRACE_S) and must finish before the kill
        assert runtime.BATCH_GRACE_S < prestop.WAIT_S < driver["terminationGracePeriodSeconds"]
