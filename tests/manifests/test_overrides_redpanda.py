"""charts/values/redpanda.yaml merged over the Redpanda chart's (26.2.2) default values, the way Helm
merges them, must validate against the chart's own values.schema.json (draft 2020-12)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest

from tests.manifests.chart import SCHEMAS, THIRD_PARTY_VALUES, cpu_millis, load_yaml, memory_mib

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
        {"resources": {"requests": {"memory": "1.25Gi"}}},
        {"resources": {"requests": {"cpu": ["500m"]}}},
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
    assert broker(MERGED).overprovisioned is True
    assert MERGED["tests"]["enabled"] is False


@dataclass(frozen=True)
class Broker:
    """The redpanda container's resources and start flags, as the chart derives them from the values."""

    request_mib: float
    limit_mib: float
    cpu_request_m: float
    smp: int
    memory_mib: int  # --memory
    reserve_mib: int  # --reserve-memory
    overprovisioned: bool


def broker(values: dict) -> Broker:
    """Chart 26.2.2 (its values.yaml, "Pod resource management"; charts/redpanda/memory.go of the operator
    repository). With resources.requests and resources.limits set, the container gets exactly those and
    --smp = max(1, floor(cpu request)), --memory = 90% of the memory request, --reserve-memory 0,
    --overprovisioned when the cpu request < 1000m. Else cpu.cores is request, limit and --smp, and the
    container memory (memory.container.min if set, else max) gives --memory = 80% of it and
    --reserve-memory = 0.2% of it + 200 MiB."""
    res = values["resources"]
    if res.get("requests") is not None and res.get("limits") is not None:
        requests, limits = res["requests"], res["limits"]
        memory = memory_mib(requests.get("memory", limits.get("memory")))
        cpu = cpu_millis(requests.get("cpu", limits.get("cpu")))
        return Broker(memory, memory_mib(limits.get("memory", requests.get("memory"))), cpu,
                      max(1, int(cpu // 1000)), int(memory * 0.9), 0, cpu < 1000)
    container = res["memory"]["container"]
    total = memory_mib(container.get("min", container["max"]))
    cores = cpu_millis(res["cpu"]["cores"])
    return Broker(total, memory_mib(container["max"]), cores, max(1, int(cores // 1000)), int(total * 0.8),
                  int(total * 0.002) + 200, bool(res["cpu"].get("overprovisioned")) or cores < 1000)


def test_memory_passes_the_chart_render_checks():
    """The chart refuses to render (panics) when Redpanda's share is < 256 MiB or share + reserve exceed the
    container memory."""
    b = broker(MERGED)
    assert b.memory_mib >= 256
    assert b.memory_mib + b.reserve_mib <= b.request_mib <= b.limit_mib, b


def test_the_render_check_model_catches_a_too_small_container():
    legacy = helm_merge(MERGED, {"resources": {"requests": None, "limits": None,
                                               "memory": {"container": {"min": "768Mi", "max": "768Mi"}}}})
    b = broker(legacy)
    assert b.memory_mib + b.reserve_mib > b.request_mib  # 614 + 201 > 768: the chart would refuse this


# Redpanda's start-up check (syschecks::memory): below 1 GiB per shard it aborts unless developer_mode.
MIN_MIB_PER_SHARD = 1024


def test_the_broker_starts_with_its_memory_per_shard():
    b = broker(MERGED)
    assert b.smp == 1 and b.memory_mib == 921  # 90% of 1Gi
    developer_mode = (MERGED.get("config", {}).get("node") or {}).get("developer_mode") is True
    assert b.memory_mib / b.smp >= MIN_MIB_PER_SHARD or developer_mode, (
        f"--memory={b.memory_mib}M --smp={b.smp}: under {MIN_MIB_PER_SHARD} MiB per shard without developer_mode")


def test_the_broker_is_not_cpu_throttled_to_its_request():
    b = broker(MERGED)
    assert b.cpu_request_m <= 500 and b.overprovisioned
    assert "cpu" not in MERGED["resources"]["limits"]


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
