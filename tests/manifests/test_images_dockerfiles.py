"""Images: every image the chart runs is either built from a Dockerfile in images/ (ours, explicit tag)
or a pinned third-party image; the Dockerfiles pin their bases, run as numeric non-root users, install
exactly pyproject.toml's pins, and copy every first-party package their components import."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from tests.manifests.chart import RENDER_CASES, REPO, by_kind, default_values, pod_specs, render

IMAGES = REPO / "images"
PYPROJECT = REPO / "pyproject.toml"
DOCKERIGNORE = (REPO / ".dockerignore").read_text().split("\n")
sys.path.insert(0, str(IMAGES))
import select_pins  # noqa: E402  (images/select_pins.py, the helper both Dockerfiles run)

# Our images: chart values key -> Dockerfile, the uid the chart runs it as, the packages it must contain.
OURS = {
    "app": (IMAGES / "app" / "Dockerfile", 10001,
            ("common", "schemas", "seed", "webapp", "operators", "verify", "consistency", "forget")),
    "spark": (IMAGES / "spark" / "Dockerfile", 185, ("common", "schemas", "spark")),
}
FIRST_PARTY = {"common", "schemas", "seed", "webapp", "operators", "spark", "verify", "consistency", "forget", "tests", "bench",
               "tools"}
# import name -> the pinned distribution that provides it (directly, or as its dependency: jinja2, wtforms)
DISTRIBUTION = {"yaml": "pyyaml", "flask_wtf": "flask-wtf", "confluent_kafka": "confluent-kafka",
                "delta": "delta-spark", "wtforms": "flask-wtf", "jinja2": "flask"}
# Imports satisfied without a pin of their own in the image, and why.
PROVIDED = {
    "spark": {"pyspark": "the Apache Spark base image (/opt/spark/python, on the path via spark-submit)"},
    "app": {},
}


def dockerfile(key: str) -> str:
    return OURS[key][0].read_text()


def from_lines(text: str) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)


def pinned_names(text: str) -> list[str]:
    """The distribution names passed to select_pins.py in a Dockerfile."""
    flat = text.replace("\\\n", " ")  # join continuation lines
    return [n for m in re.finditer(r"select_pins\.py\s+\S*pyproject\.toml\s([^>\n]*)>", flat) for n in m.group(1).split()]


def test_every_chart_image_is_ours_or_pinned_third_party():
    values = default_values()
    ours = {f"{values['images'][k]['repository']}:{values['images'][k]['tag']}": k for k in OURS}
    seen = set()
    for _, files in RENDER_CASES:
        objects = render(files)
        for pod in pod_specs(objects):
            seen.update(c["image"] for c in pod.containers)
    for image in sorted(seen):
        if image.startswith("marketing-engine/"):
            assert image in ours, f"{image}: ours, but not built from images/ with the chart's tag"
        else:
            repo, _, tag = image.rpartition(":")
            assert repo and re.fullmatch(r"v?\d+(\.\d+)+([-.][\w.]+)?", tag), f"{image}: third party must be pinned"
    assert set(ours) <= seen


def test_make_builds_every_image_of_ours_with_its_content_tag():
    mk = (REPO / "mk" / "kind.mk").read_text()
    for key, (path, _, _) in OURS.items():
        rel = path.relative_to(REPO)
        var = f"$({key.upper()}_IMAGE_TAG)"
        assert f"docker build -f {rel} -t marketing-engine/{key}:{var} ." in mk
        assert f"marketing-engine/{key}:{var}" in mk.split("kind load docker-image", 1)[1]
        assert re.search(rf"^{key.upper()}_IMAGE_TAG\s*\?=\s*\$\(shell scripts/image-tag.sh {key}\)$", mk, re.MULTILINE)


@pytest.mark.parametrize("key", OURS)
def test_bases_are_pinned(key):
    for base in from_lines(dockerfile(key)):
        name, _, tag = base.partition("@")[0].rpartition("/")[2].partition(":")
        assert tag and tag != "latest", f"{key}: FROM {base} is not pinned"
        assert re.search(r"\d+\.\d+", tag), f"{key}: FROM {base}: a version tag, not a floating one"


def test_spark_base_matches_pyspark_and_the_jars():
    pins = select_pins.pins(PYPROJECT)
    pyspark = pins["pyspark"].split("==")[1]
    bases = from_lines(dockerfile("spark"))
    runtime = bases[-1]
    assert runtime == f"apache/spark:{pyspark}-scala2.13-java17-python3-ubuntu"
    pom = (REPO / "jars" / "spark-pom.xml").read_text()
    assert f"<spark.version>{pyspark}</spark.version>" in pom
    assert f"<delta.spark.minor>{'.'.join(pyspark.split('.')[:2])}</delta.spark.minor>" in pom
    assert f"<delta.version>{pins['delta-spark'].split('==')[1]}</delta.version>" in pom
    assert "_2.13" in pom
    # jars are resolved from that pom in a Maven build stage and baked into /opt/spark/jars
    assert re.search(r"^FROM maven:[\d.]+-eclipse-temurin-17 AS jars", dockerfile("spark"), re.MULTILINE)
    assert "COPY jars/spark-pom.xml" in dockerfile("spark")
    assert "COPY --from=jars /build/jars/ /opt/spark/jars/" in dockerfile("spark")


@pytest.mark.parametrize("key", OURS)
def test_runs_as_the_numeric_non_root_user_the_chart_expects(key):
    _, uid, _ = OURS[key]
    users = re.findall(r"^USER\s+(\S+)", dockerfile(key), re.MULTILINE)
    assert users and users[-1] == f"{uid}:{uid}", f"{key}: last USER is {users[-1:]}, expected {uid}:{uid}"


def test_chart_security_contexts_use_the_image_uids():
    objects = render((), ("pipeline.enabled=true",))
    for pod in pod_specs(objects):
        image = pod.spec["containers"][0]["image"]
        for key, (_, uid, _) in OURS.items():
            if image.startswith(f"marketing-engine/{key}:"):
                assert pod.spec["securityContext"]["runAsUser"] == uid, pod.owner
    assert by_kind(objects, "SparkApplication")


@pytest.mark.parametrize("key", OURS)
def test_installs_exactly_the_pyproject_pins(key):
    names = pinned_names(dockerfile(key))
    assert names, f"{key}: no select_pins.py call"
    lines = select_pins.select(PYPROJECT, names)  # raises when a name is not a pinned dependency
    assert all("==" in line for line in lines)
    assert not re.search(r"pip install[^\n]*\b[\w-]+==", dockerfile(key)), f"{key}: a version pinned outside pyproject"
    if key == "spark":  # pyspark comes from the base image: delta-spark must not pull a second one from PyPI
        assert "pip install --no-compile --no-deps -r /tmp/build/delta.txt" in dockerfile(key)
        assert "pyspark" not in pinned_names(dockerfile(key))


def test_select_pins_refuses_unknown_or_unpinned(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["a==1.0", "b>=2"]\n')
    assert select_pins.select(pyproject, ["A"]) == ["a==1.0"]
    with pytest.raises(SystemExit):
        select_pins.select(pyproject, ["b"])
    with pytest.raises(SystemExit):
        select_pins.select(pyproject, ["c"])


def _imports(packages: tuple[str, ...]) -> set[str]:
    found = set()
    for package in packages:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("key", OURS)
def test_image_has_what_its_code_imports(key):
    path, _, packages = OURS[key]
    text = path.read_text()
    imports = _imports(packages)
    for package in imports & FIRST_PARTY:
        assert re.search(rf"^COPY {package}/ {package}/$", text, re.MULTILINE), f"{key}: {package}/ not copied"
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    third_party = imports - FIRST_PARTY - stdlib
    installed = {select_pins.canonical(n.split("[")[0]) for n in pinned_names(text)}
    for module in sorted(third_party):
        if module in PROVIDED[key]:
            continue
        dist = select_pins.canonical(DISTRIBUTION.get(module, module))
        assert dist in installed, f"{key} image: `import {module}` but {dist} is not installed"


def test_every_module_the_chart_runs_on_the_app_image_is_in_it():
    """`python -m X` / `kopf run -m X` of every app-image container: X's package is one the image has
    (make verify ran `python -m verify` on an image without verify/ before this test existed)."""
    from tests.manifests.chart import default_values, pod_specs, render

    app_image = default_values()["images"]["app"]["repository"]
    modules = set()
    for pod in pod_specs(render()):
        for container in pod.spec.get("containers", []) + pod.spec.get("initContainers", []):
            if app_image not in container.get("image", ""):
                continue
            argv = [*container.get("command", []), *container.get("args", [])]
            modules.update(argv[i + 1].split(".")[0] for i, arg in enumerate(argv[:-1]) if arg == "-m")
    assert {"webapp", "seed", "operators", "verify"} <= modules, modules
    assert modules <= set(OURS["app"][2]), f"not in the app image: {modules - set(OURS['app'][2])}"
    for package in modules:
        assert re.search(rf"^COPY {package}/ {package}/$", dockerfile("app"), re.MULTILINE), package


def test_dockerignore_sends_only_what_the_dockerfiles_copy():
    assert DOCKERIGNORE[0].strip() == "*" or "*" in [line.strip() for line in DOCKERIGNORE]
    allowed = {line.strip()[1:].rstrip("/") for line in DOCKERIGNORE if line.strip().startswith("!")}
    for key in OURS:
        for source in re.findall(r"^COPY (?!--from)(\S+)", dockerfile(key), re.MULTILINE):
            assert source.rstrip("/") in allowed, f"{key}: COPY {source} is excluded by .dockerignore"
    for secret_or_big in (".venv", ".cache", "data", ".git", "tests"):
        assert secret_or_big not in allowed


def test_dockerfiles_exist_only_for_images_we_use():
    dockerfiles = sorted(p.parent.name for p in IMAGES.glob("*/Dockerfile"))
    assert dockerfiles == sorted(OURS)
    assert all(Path(p).exists() for p, _, _ in OURS.values())
