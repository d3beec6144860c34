"""The seed Job and the topics Job are created together by `helm upgrade`; the seed must not publish
before the topics exist (Redpanda does not auto-create them: the seed would fail once and restart).
Its init container waits for them; here it runs for real against a fake `rpk` that knows which topics
exist."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.manifests.chart import by_kind, render


def jobs() -> dict[str, dict]:
    return {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in by_kind(render(()), "Job")}


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_the_seed_waits_for_every_topic_the_topics_job_creates():
    seed, topics = jobs()["seed"]["spec"]["template"]["spec"], jobs()["topics"]["spec"]["template"]["spec"]
    (wait,) = seed["initContainers"]
    (rpk,) = topics["containers"]
    assert wait["image"] == rpk["image"]  # the image the topics Job already pulled
    assert env_of(wait)["TOPICS"] == env_of(rpk)["TOPICS"]
    assert env_of(wait)["BROKERS"] == env_of(rpk)["BROKERS"]
    assert int(env_of(wait)["WAIT_SECONDS"]) > 0  # bounded: a missing topic ends in a clear failure


def test_no_wait_when_the_chart_does_not_create_the_topics():
    (seed,) = [j for j in by_kind(render((), ("topics.enabled=false",)), "Job")
               if j["metadata"]["labels"]["app.kubernetes.io/component"] == "seed"]
    assert "initContainers" not in seed["spec"]["template"]["spec"]


FAKE_RPK = """#!/usr/bin/env bash
# fake rpk: `rpk topic describe NAME -X brokers=...` succeeds when NAME is listed in $EXISTING
echo "$*" >> "$RPK_LOG"
[ "$1 $2" = "topic describe" ] && grep -qx "$3" "$EXISTING"
"""


def run_wait(tmp_path: Path, existing: list[str], wait_seconds: int) -> subprocess.CompletedProcess[str]:
    (wait,) = jobs()["seed"]["spec"]["template"]["spec"]["initContainers"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "rpk").write_text(FAKE_RPK)
    (bin_dir / "rpk").chmod(0o755)
    (tmp_path / "existing").write_text("".join(f"{t}\n" for t in existing))
    env = {**os.environ, **env_of(wait), "WAIT_SECONDS": str(wait_seconds), "HOME": str(tmp_path),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "EXISTING": str(tmp_path / "existing"),
           "RPK_LOG": str(tmp_path / "rpk.log")}
    return subprocess.run([*wait["command"], *wait["args"]], env=env, capture_output=True, text=True, timeout=60)


def topic_names() -> list[str]:
    (rpk,) = jobs()["topics"]["spec"]["template"]["spec"]["containers"]
    return [spec.split(":")[0] for spec in env_of(rpk)["TOPICS"].split()]


def test_the_wait_passes_once_every_topic_exists(tmp_path):
    proc = run_wait(tmp_path, topic_names(), 30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [f"topic {t}: exists" for t in topic_names()]


@pytest.mark.parametrize("missing", [0, -1])
def test_the_wait_fails_naming_a_missing_topic(tmp_path, missing):
    names = topic_names()
    absent = names[missing]
    proc = run_wait(tmp_path, [t for t in names if t != absent], 2)
    assert proc.returncode == 1
    assert f"topic {absent} does not exist after 2s" in proc.stdout
    # it kept asking until the deadline, not once
    assert (tmp_path / "rpk.log").read_text().count(f"topic describe {absent} ") >= 2
