"""Every image the stack runs has a linux/amd64 and a linux/arm64 variant, and says where that fact comes
from: the one table in docs/kubernetes.md#images-and-platforms lists each image reference — our chart's
(every render case), the third-party charts' as our override files set them, the kind node, and every
Dockerfile FROM — and a reference missing from it fails here. Our Dockerfiles assume no architecture."""

from __future__ import annotations

import re

import pytest

from tests.manifests.chart import (
    RENDER_CASES,
    REPO,
    SCHEMAS,
    THIRD_PARTY_VALUES,
    by_kind,
    default_values,
    load_yaml,
    pod_specs,
    render,
)

DOC = REPO / "docs" / "kubernetes.md"
# The app versions of the pinned third-party chart versions (their Chart.yaml appVersion): an empty
# image tag in their values means this tag.
APP_VERSIONS = {"redpanda": "v26.2.1", "spark-operator": "2.5.2", "kafka-ui": "v1.3.0"}
DOCKERFILES = sorted((REPO / "images").glob("*/Dockerfile"))


def table() -> dict[str, dict[str, str]]:
    section = DOC.read_text().split("## Images and platforms", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        image, used_by, amd64, arm64, source = cells[:5]
        out[image.strip("`")] = {"used_by": used_by, "amd64": amd64, "arm64": arm64, "source": source}
    return out


def ours() -> set[str]:
    values = default_values()
    return {values["images"][key]["repository"] for key in ("app", "spark")}


def normalize(ref: str) -> str:
    """Our own images are tagged by content at build time: the table names them by repository."""
    repository = ref.split("@", 1)[0].rsplit(":", 1)[0] if ":" in ref.split("/")[-1] else ref
    return repository if repository in ours() else ref


def chart_images() -> set[str]:
    refs = set()
    for _, values in RENDER_CASES:
        objects = render(values)
        for pod in pod_specs(objects):
            refs.update(c["image"] for c in pod.containers)
        refs.update(a["spec"]["image"] for a in by_kind(objects, "SparkApplication"))
    return {normalize(r) for r in refs}


def _merged(chart: str) -> dict:
    def merge(base: dict, override: dict) -> dict:
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    return merge(load_yaml(SCHEMAS / chart / "values.yaml"), load_yaml(THIRD_PARTY_VALUES / f"{chart}.yaml"))


def third_party_images() -> set[str]:
    rp = _merged("redpanda")
    spark = _merged("spark-operator")
    ui = _merged("kafka-ui")
    refs = {
        f"{rp['image']['repository']}:{rp['image']['tag'] or APP_VERSIONS['redpanda']}",
        f"{rp['statefulset']['sideCars']['image']['repository']}:{rp['statefulset']['sideCars']['image']['tag']}",
        f"{rp['statefulset']['initContainerImage']['repository']}:{rp['statefulset']['initContainerImage']['tag']}",
        f"{spark['image']['registry']}/{spark['image']['repository']}:{spark['image']['tag'] or APP_VERSIONS['spark-operator']}",
        f"{ui['image']['registry']}/{ui['image']['repository']}:{ui['image']['tag'] or APP_VERSIONS['kafka-ui']}",
    }
    if spark["hook"]["upgradeCrd"]:
        hook = spark["hook"]["image"]
        refs.add(f"{hook['registry']}/{hook['repository']}:{hook['tag'] or APP_VERSIONS['spark-operator']}")
    return refs


def kind_images() -> set[str]:
    config = load_yaml(REPO / "kind-config.yaml")
    return {node["image"] for node in config["nodes"]}


def dockerfile_bases() -> set[str]:
    refs = set()
    for path in DOCKERFILES:
        stages = set()
        for line in path.read_text().splitlines():
            match = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
            if match:
                if match.group(1) not in stages:  # FROM <earlier stage> is not an image
                    refs.add(match.group(1))
                if match.group(2):
                    stages.add(match.group(2))
    return refs


def every_reference() -> dict[str, str]:
    out = {}
    for where, refs in (("chart", chart_images()), ("overrides", third_party_images()),
                        ("kind-config.yaml", kind_images()), ("Dockerfile FROM", dockerfile_bases())):
        for ref in refs:
            out.setdefault(ref, where)
    return out


def test_every_image_reference_is_in_the_table():
    rows = table()
    missing = {ref: where for ref, where in every_reference().items() if ref not in rows}
    assert missing == {}, f"image references missing from docs/kubernetes.md#images-and-platforms: {missing}"


def test_every_image_in_the_table_has_amd64_and_arm64_and_a_source():
    rows = table()
    assert rows, "docs/kubernetes.md has no image table"
    for image, row in rows.items():
        assert row["amd64"].startswith("yes") and row["arm64"].startswith("yes"), f"{image}: {row}"
        assert len(row["source"]) > 10, f"{image}: say where the platforms come from"


def test_the_table_lists_only_what_the_stack_runs():
    """A stale row (an image no longer referenced) would make the table claim more than it checks."""
    stale = set(table()) - set(every_reference())
    assert stale == set(), f"rows for images nothing references: {stale}"


def test_ksqldb_is_the_multi_arch_confluent_platform_image():
    """confluentinc/ksqldb-server is amd64-only (confluentinc/ksql#9719): the chart runs cp-ksqldb-server."""
    refs = every_reference()
    assert not [r for r in refs if r.startswith("confluentinc/ksqldb-server")]
    (ksqldb,) = [r for r in refs if r.startswith("confluentinc/cp-ksqldb-server:")]
    major, minor = (int(x) for x in ksqldb.split(":", 1)[1].split(".")[:2])
    assert (major, minor) >= (7, 2), "Confluent publishes arm64 images from CP 7.2 (confluentinc/kafka-images#183)"
    assert "0.29" in table()[ksqldb]["used_by"], "say which ksqlDB version the CP image carries"


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_dockerfiles_assume_no_architecture(path):
    """No --platform, no per-architecture download or path (amd64/x86_64/aarch64/arm64 in a command):
    `docker build` on an arm64 or amd64 host builds a native image from the multi-arch bases."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"--platform|amd64|x86_64|aarch64|arm64|TARGETARCH", text), path
