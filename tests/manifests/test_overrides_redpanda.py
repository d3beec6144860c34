"""charts/values/redpanda.yaml merged over the Redpanda chart's (26.2.2) default values, the way Helm
merges them, must validate against the chart's own values.schema.json (draft 2020-12)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest

from tests.manifests.chart import SCHEMAS, THIRD_PARTY_VALUES, load_yaml, memory_mib

REDPANDA = SCHEMAS / "redpanda"
SCHEMA = json.loads((REDPANDA / "values.schema.json").read_text())
DEFAULTS = load_yaml(REDPANDA / "values.yaml")
OVERRIDE = load_yaml(THIRD_PARTY_VALUES / "redpanda.yaml")


def helm_merge(base: Any, override: Any) -> Any:
    """Helm's values coalescing: maps merge key by key, anything else replaces; null deletes the key."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key] = helm_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def errors(values: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]


MERGED = helm_merge(DEFAULTS, OVERRIDE)


def test_chart_version_is_the_pinned_one():
    assert load_yaml(REDPANDA / "Chart.yaml")["version"] == "26.2.2"
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_defaults_validate():
    """Sanity of the harness: the chart's own defaults pass its schema."""
    assert errors(DEFAULTS) == []


def test_override_merged_over_defaults_validates():
    assert errors(MERGED) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"statefulset": {"replicas": "one"}},
        {"tls": {"enabeld": False}},  # typo
        {"resources": {"memory": {"container": {"max": "2.25Gi"}}}},  # two decimals: the chart's pattern refuses
        {"logging": {"logLevel": "verbose"}},
    ],
)
def test_schema_catches_bad_overrides(bad):
    """The validation above can fail: broken variants of our override are rejected."""
    assert errors(helm_merge(MERGED, bad))


def test_laptop_settings():
    assert MERGED["statefulset"]["replicas"] == 1
    assert MERGED["tls"]["enabled"] is False
    assert MERGED["console"]["enabled"] is False
    assert MERGED["tuning"]["tune_aio_events"] is False  # no privileged init container
    assert MERGED["logging"]["usageStats"]["enabled"] is False
    assert MERGED["statefulset"]["initContainers"]["setDataDirOwnership"]["enabled"] is True
    assert MERGED["storage"]["persistentVolume"]["storageClass"] == "standard"  # kind's local-path class
    assert MERGED["resources"]["cpu"]["overprovisioned"] is True
    assert MERGED["tests"]["enabled"] is False


def redpanda_memory(values: dict) -> tuple[int, int, int]:
    """(container, --memory, --reserve-memory) in MiB, as the chart computes them (charts/redpanda/memory.go):
    container = min if set else max; memory = 80% of it; reserve = 0.2% of it + 200 MiB."""
    container = values["resources"]["memory"]["container"]
    total = int(memory_mib(container.get("min", container["max"])))
    return total, int(total * 0.8), int(total * 0.002) + 200


def test_memory_passes_the_chart_render_checks():
    """The chart refuses to render (panics) when Redpanda's share is < 256 MiB or share + reserve exceed the
    container memory."""
    total, memory, reserve = redpanda_memory(MERGED)
    assert memory >= 256
    assert memory + reserve <= total, (total, memory, reserve)
    container = MERGED["resources"]["memory"]["container"]
    assert memory_mib(container["min"]) <= memory_mib(container["max"])


def test_the_render_check_model_catches_a_too_small_container():
    total, memory, reserve = redpanda_memory(helm_merge(MERGED, {"resources": {"memory": {"container": {"min": "768Mi"}}}}))
    assert memory + reserve > total  # 614 + 201 > 768: the chart would refuse this


def test_no_latest_images():
    assert MERGED["statefulset"]["initContainerImage"]["tag"] not in ("", "latest")
    assert MERGED["image"]["tag"] == ""  # the chart's appVersion (v26.2.1), pinned by the chart version


def test_external_listeners_for_kind():
    """Advertised as localhost on the chart's NodePorts, which kind-config.yaml maps 1:1 to the host."""
    assert MERGED["external"]["enabled"] is True
    assert MERGED["external"]["type"] == "NodePort"
    assert MERGED["external"]["addresses"] == ["localhost"]
    listeners = MERGED["listeners"]
    ports = {
        "kafka": listeners["kafka"]["external"]["default"]["advertisedPorts"],
        "schemaRegistry": listeners["schemaRegistry"]["external"]["default"]["advertisedPorts"],
        "http": listeners["http"]["external"]["default"]["advertisedPorts"],
    }
    assert ports == {"kafka": [31092], "schemaRegistry": [30081], "http": [30082]}
    # Plain (no TLS) internal listeners on the ports the chart's clients use.
    assert (listeners["kafka"]["port"], listeners["schemaRegistry"]["port"], listeners["http"]["port"]) == (
        9093, 8081, 8082)
