"""Our images are tagged by content (scripts/image-tag.sh): a changed build input is a new tag, and the
new tag is what `make kind-up` deploys, so a rerun rolls out a rebuilt image (a fixed tag with
IfNotPresent would leave the old pods running). The script runs on a copy of the build inputs, which
the tests change; kind-up runs against the fake tools of test_kind_up."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.manifests.chart import REPO
from tests.manifests.test_kind_up import calls, fake_tools, run_kind_up

INPUTS = ("images", ".dockerignore", "pyproject.toml", "jars/spark-pom.xml", "common", "schemas", "seed",
          "webapp", "operators", "spark", "ksql", "verify", "consistency", "forget", "README.md")


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", "spark-warehouse")
    for name in INPUTS:
        src, dst = REPO / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            shutil.copy2(src, dst)
    return root


def tag(root: Path, image: str) -> str:
    return subprocess.run([str(REPO / "scripts" / "image-tag.sh"), image], cwd=root, capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def tags(root: Path) -> tuple[str, str]:
    return tag(root, "app"), tag(root, "spark")


def test_same_inputs_same_tags(context):
    assert tags(context) == tags(context)
    app, spark = tags(context)
    assert app.startswith("0.1.0-") and spark.startswith("0.1.0-") and app != spark


@pytest.mark.parametrize(("path", "changes"), [
    ("webapp/settings.py", {"app"}),
    ("seed/__main__.py", {"app"}),
    ("spark/settings.py", {"spark"}),
    ("common/settings.py", {"app", "spark"}),  # copied into both images
    ("ksql/010-streams.sql", {"app", "spark"}),
    ("pyproject.toml", {"app", "spark"}),
    ("jars/spark-pom.xml", {"spark"}),
    ("images/app/Dockerfile", {"app"}),
    ("images/spark/Dockerfile", {"spark"}),
    ("README.md", set()),  # not in the build context
])
def test_a_changed_input_changes_exactly_the_images_that_copy_it(context, path, changes):
    target = context / path
    if not target.exists():  # a name that differs in this checkout: any file of that directory
        target = next(p for p in sorted(target.parent.rglob("*")) if p.is_file())
    before = dict(zip(("app", "spark"), tags(context), strict=True))
    target.write_text(target.read_text() + "\n# changed\n")
    after = dict(zip(("app", "spark"), tags(context), strict=True))
    assert {k for k in before if before[k] != after[k]} == changes


def test_caches_do_not_change_the_tag(context):
    before = tags(context)
    cache = context / "webapp" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "x.cpython-311.pyc").write_bytes(b"\0bytecode")
    assert tags(context) == before


def test_a_new_file_changes_the_tag(context):
    before = tags(context)
    (context / "spark" / "new_module.py").write_text("X = 1\n")
    assert tags(context)[1] != before[1] and tags(context)[0] == before[0]


def test_a_missing_copy_source_fails_instead_of_tagging(context):
    shutil.rmtree(context / "operators")
    proc = subprocess.run([str(REPO / "scripts" / "image-tag.sh"), "app"], cwd=context, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "copies operators" in proc.stderr


def deployed_images(env: dict[str, str]) -> dict[str, str]:
    """Image of every SparkApplication kind-up applied, and the app tag it gave the chart."""
    docs = [d for d in yaml.safe_load_all(Path(env["FAKE_APPLIED"]).read_text()) if d]
    out = {d["metadata"]["name"]: d["spec"]["image"] for d in docs if d["kind"] == "SparkApplication"}
    (upgrade,) = [c for c in calls(env) if c.startswith("helm upgrade --install marketing-engine ")]
    out["chart images.app.tag"] = upgrade.split("--set images.app.tag=", 1)[1].split()[0]
    out["chart images.spark.tag"] = upgrade.split("--set images.spark.tag=", 1)[1].split()[0]
    return out


def test_a_changed_source_file_changes_what_kind_up_deploys(tmp_path, context):
    app, spark = tags(context)
    (context / "spark" / "settings.py").write_text((context / "spark" / "settings.py").read_text() + "\n# x\n")
    app2, spark2 = tags(context)
    assert app2 == app and spark2 != spark
    deployed = []
    for run, (a, s) in enumerate(((app, spark), (app2, spark2))):
        (tmp_path / f"run{run}").mkdir()
        env = {**fake_tools(tmp_path / f"run{run}"), "APP_IMAGE_TAG": a, "SPARK_IMAGE_TAG": s}
        proc = run_kind_up(env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"docker build -f images/spark/Dockerfile -t marketing-engine/spark:{s} ." in calls(env)
        deployed.append(deployed_images(env))
    first, second = deployed
    assert len([k for k in first if k.startswith("marketing-engine-")]) == 4
    assert all(v == f"marketing-engine/spark:{spark}" for k, v in first.items() if k.startswith("marketing-engine-"))
    assert all(v == f"marketing-engine/spark:{spark2}" for k, v in second.items() if k.startswith("marketing-engine-"))
    assert first["chart images.spark.tag"] == spark and second["chart images.spark.tag"] == spark2
    assert first["chart images.app.tag"] == second["chart images.app.tag"] == app  # app unchanged: no rollout
