"""helm lint --strict, and values.schema.json: closed everywhere, so a misspelt override fails."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests.manifests.chart import CHART, RENDER_CASES, default_values, helm, template_args

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
# Maps whose keys are the user's (labels, env var names, Spark properties): typed, not closed.
FREE_FORM = {"commonLabels", "extraEnv", "sparkConf", "env", "stringMap", "envMap", "config"}  # config: a topic's settings


@pytest.mark.parametrize("label,values", RENDER_CASES, ids=[c[0] for c in RENDER_CASES])
def test_helm_lint_strict(label, values):
    args = ["lint", "--strict", str(CHART)]
    for f in values:
        args += ["-f", str(f)]
    proc = helm(*args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ERROR]" not in proc.stdout and "[WARNING]" not in proc.stdout, proc.stdout


def _objects(node: Any, path: str = "#") -> list[tuple[str, dict]]:
    """Every sub-schema that describes an object with named properties."""
    found = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            found.append((path, node))
        for key, value in node.items():
            found += _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _objects(value, f"{path}/{i}")
    return found


def test_schema_closes_every_object():
    objects = _objects(SCHEMA)
    assert len(objects) > 20
    open_ones = [path for path, node in objects if node.get("additionalProperties") is not False]
    assert open_ones == [], f"objects without additionalProperties: false: {open_ones}"


def test_free_form_maps_are_typed():
    """The few maps that take arbitrary keys still constrain their values to scalars."""

    def walk(node: Any, path: str = "#") -> list[str]:
        bad = []
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" not in node and "$ref" not in node:
                extra = node.get("additionalProperties")
                if not isinstance(extra, dict) or "type" not in extra:
                    bad.append(path)
                if path.rsplit("/", 1)[-1] not in FREE_FORM:
                    bad.append(f"{path} (not a known free-form map)")
            for key, value in node.items():
                bad += walk(value, f"{path}/{key}")
        return bad

    assert walk(SCHEMA) == []


def test_default_values_validate_and_every_key_is_declared():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(default_values())


@pytest.mark.parametrize(
    "override,message",
    [
        ("redis.maxmemroy=1mb", "maxmemroy"),  # typo in a key
        ("web.service.nodeport=30500", "nodeport"),  # wrong case
        ("pipeline.jobs.bronze.executor.instancs=2", "instancs"),  # typo deep in a job override
        ("pipeline.jobs.bronz.enabled=true", "bronz"),  # unknown job
        ("images.app.tag=latest", "tag"),  # :latest is refused
        ("pipeline.driver.memory=512Mi", "memory"),  # Kubernetes unit where Spark wants 512m
        ("ksqldb.resources.requests.memry=1Gi", "memry"),
        ("seed.transport=smtp", "transport"),
    ],
)
def test_schema_rejects_bad_overrides(override, message):
    proc = helm(*template_args(sets=(override,)), check=False)
    assert proc.returncode != 0, f"--set {override} was accepted"
    assert message in proc.stderr, proc.stderr


def test_required_resources_cannot_be_dropped():
    """Every container is sized: removing a limit is a schema error, not a silently unbounded pod."""
    proc = helm(*template_args(sets=("web.resources.limits=null",)), check=False)
    assert proc.returncode != 0
    assert "limits" in proc.stderr
