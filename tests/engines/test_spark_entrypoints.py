"""The job entry points fail at start with one line naming what is wrong, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.paths import REPO


def _run(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "SPARK_JARS_DIR"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env={**base, **env},
                          capture_output=True, text=True, timeout=180)


def test_bad_setting_names_the_variable():
    done = _run("spark.jobs.bronze", {"TRIGGER_INTERVAL": "soon"})
    assert done.returncode == 2
    assert "TRIGGER_INTERVAL='soon' is invalid" in done.stderr and "Traceback" not in done.stderr


def test_missing_jars_are_named_at_start(tmp_path):
    # silver: its start checks need only a usable DELTA_ROOT, so the run gets as far as Spark.
    done = _run("spark.jobs.silver", {"DELTA_ROOT": str(tmp_path)})
    assert done.returncode == 2
    assert "silver: Delta Lake is not on Spark's classpath: set SPARK_JARS_DIR" in done.stderr
    assert "Traceback" not in done.stderr
