"""Images tier: images/app and images/spark built unchanged with podman, their entry points run as the
chart runs them (tests/support/podman.py) against the real broker, redis-server and the registry double.

The bases are the stand-ins of scripts/image-bases.sh (`make test-images` makes them first), or the real
ones with IMAGE_BASES=real on a machine that reaches Docker Hub (docs/images.md). Without podman or the
bases the tier is skipped on a laptop, but fails under CI (env CI set), so a broken setup can never turn
into a green run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import podman
from tests.support.paths import CACHE, OUTPUT, REPO

IMAGE_BASES = os.environ.get("IMAGE_BASES", "stand-in")
HELM = Path(os.environ.get("HELM_BIN") or CACHE / "bin" / "helm")
DOCKERFILES = {"app": REPO / "images" / "app" / "Dockerfile", "spark": REPO / "images" / "spark" / "Dockerfile"}


@dataclass
class BuiltImage:
    name: str  # app / spark
    tag: str  # the name the chart / the SparkApplications give it
    seconds: float
    size: int
    user: str  # the image's USER

    @property
    def mib(self) -> float:
        return self.size / 2**20


_built: dict[str, BuiltImage] = {}


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


def from_lines(dockerfile: Path) -> list[str]:
    return [line.split()[1] for line in dockerfile.read_text().splitlines() if line.upper().startswith("FROM ")]


def qualified(image: str) -> str:
    """Docker's reading of a short name: python:3 -> docker.io/library/python:3."""
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


@pytest.fixture(scope="session")
def engine() -> podman.Engine:
    try:
        found = podman.engine()
    except RuntimeError as exc:
        skip_or_fail(str(exc))
    if IMAGE_BASES != "real":
        missing = [image for dockerfile in DOCKERFILES.values() for image in from_lines(dockerfile)
                   if not found.exists(qualified(image))]
        if missing:
            skip_or_fail(f"stand-in bases missing ({', '.join(missing)}): run scripts/image-bases.sh "
                         "(make test-images does), or IMAGE_BASES=real with registry access")
    return found


@pytest.fixture(scope="session")
def rendered_chart() -> tuple[dict[str, Any], ...]:
    """The chart with its default values, as `make kind-up` installs it."""
    if not os.access(HELM, os.X_OK):
        skip_or_fail(f"missing {HELM}: run `make helm-tool` (make test-images does)")
    from tests.manifests import chart

    return chart.render()


def workload(objects: tuple[dict[str, Any], ...], component: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, our container) of the chart's Deployment/Job labelled with ``component``."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job") and \
                obj["metadata"]["labels"].get("app.kubernetes.io/component") == component:
            spec = obj["spec"]["template"]["spec"]
            ours = [c for c in spec["containers"] if c["image"].startswith("marketing-engine/")]
            assert len(ours) == 1, f"{component}: expected one container of our images, found {len(ours)}"
            return spec, ours[0]
    raise AssertionError(f"no Deployment/Job with component {component} in the rendered chart")


def _build(engine: podman.Engine, name: str, tag: str) -> BuiltImage:
    if name in _built:
        return _built[name]
    OUTPUT.mkdir(exist_ok=True)
    log = OUTPUT / f"image-build-{name}.log"
    try:
        seconds = engine.build(DOCKERFILES[name], tag, log, pull="missing" if IMAGE_BASES == "real" else "never")
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    info = engine.inspect(tag)
    image = BuiltImage(name, tag, seconds, int(info["Size"]), info.get("Config", {}).get("User", ""))
    _built[name] = image
    return image


@pytest.fixture(scope="session")
def app_image(engine: podman.Engine, rendered_chart: tuple[dict[str, Any], ...]) -> BuiltImage:
    """images/app built and tagged as the chart names it (marketing-engine/app:<tag>)."""
    _, web = workload(rendered_chart, "web")
    return _build(engine, "app", web["image"])


@pytest.fixture(scope="session")
def spark_image(engine: podman.Engine, spark_apps: dict[str, dict[str, Any]]) -> BuiltImage:
    """images/spark built and tagged as the SparkApplications name it (marketing-engine/spark:<tag>)."""
    return _build(engine, "spark", spark_apps["bronze"]["spec"]["image"])


@pytest.fixture(scope="session")
def spark_apps() -> dict[str, dict[str, Any]]:
    """spark/k8s/*.yaml: the SparkApplications `make pipeline` applies (rendered from the chart)."""
    import yaml

    apps = {}
    for path in sorted((REPO / "spark" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "SparkApplication":
                apps[path.stem] = doc
    return apps


@pytest.fixture
def container_name(request: pytest.FixtureRequest) -> str:
    return podman.unique_name(f"me-{request.node.name[:30].replace('_', '-').strip('-')}")


def pytest_report_header(config: pytest.Config) -> str:
    return f"images: IMAGE_BASES={IMAGE_BASES}, engine {os.environ.get('IMAGE_ENGINE', 'podman')}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _built:
        return
    terminalreporter.write_sep("-", f"images ({'real' if IMAGE_BASES == 'real' else 'stand-in'} bases)")
    for image in _built.values():
        terminalreporter.write_line(f"{image.tag}: {image.mib:,.0f} MiB, built in {image.seconds:.0f}s, "
                                    f"USER {image.user}")


