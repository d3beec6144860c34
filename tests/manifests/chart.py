"""Helpers of the manifests tier: render the chart with the pinned Helm, walk pod specs, parse sizes.

Not a test module. Rendering is cached per set of values files for the session.
"""

from __future__ import annotations

import functools
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import CACHE, REPO, SHARED

HELM = CACHE / "bin" / "helm"
CHART = REPO / "charts" / "marketing-engine"
THIRD_PARTY_VALUES = REPO / "charts" / "values"
TEST_VALUES = Path(__file__).resolve().parent / "values"
SPARK_K8S = REPO / "spark" / "k8s"
SCHEMAS = SHARED / "schemas"
RELEASE = "marketing-engine"
NAMESPACE = "marketing-engine"
# The kind node (kind-config.yaml) runs Kubernetes 1.36.1; kubernetes-validate 1.37.0 ships schemas for
# 1.25 .. 1.37, so objects are validated against exactly 1.36.
KUBE_VERSION = "1.36.1"

# Override files of tests/manifests/values/: each one is rendered, validated and policy-checked like
# the defaults (and installed for real by the cluster tier).
VALUES_FILES = sorted(TEST_VALUES.glob("*.yaml"))
# (label, values files): the default values, then each override file on its own.
RENDER_CASES: list[tuple[str, tuple[Path, ...]]] = [("defaults", ())] + [
    (f.stem, (f,)) for f in VALUES_FILES
]


def helm_bin() -> Path:
    if not HELM.exists():
        pytest.fail(
            f"{HELM} is missing: the manifests tier renders the chart with the pinned Helm. "
            "Run `make helm-tool` (or `make test-manifests`, which installs it first).",
            pytrace=False,
        )
    return HELM


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm_bin()), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}", pytrace=False)
    return proc


def template_args(values: tuple[Path, ...] = (), sets: tuple[str, ...] = ()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for f in values:
        args += ["-f", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


@functools.cache
def render_text(values: tuple[Path, ...] = (), sets: tuple[str, ...] = ()) -> str:
    """`helm template` output, cached for the session."""
    return helm(*template_args(values, sets)).stdout


def render(values: tuple[Path, ...] = (), sets: tuple[str, ...] = ()) -> tuple[dict[str, Any], ...]:
    """The objects `helm template` renders (empty documents dropped); fresh dicts on every call."""
    return tuple(d for d in yaml.safe_load_all(render_text(values, sets)) if d)


def by_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# ---- pod specs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodSpec:
    """A pod spec as it will run: from a workload's template, or assembled from a SparkApplication's
    driver/executor section (what the Spark Operator's webhook applies to the pods)."""

    owner: str  # e.g. Deployment/marketing-engine-web, SparkApplication/marketing-engine-bronze:driver
    kind: str  # the owner's kind (a CronJob's pods: CronJob)
    labels: dict[str, str]
    spec: dict[str, Any]
    long_running: bool  # probes are required (not Jobs; Spark pods are supervised by the operator)

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.spec.get("initContainers", [])) + list(self.spec["containers"])


WORKLOAD_KINDS = {"Deployment": True, "StatefulSet": True, "DaemonSet": True, "Job": False}
# Run-to-completion workloads: their pods come and go (no probes; transient in the memory budget).
TRANSIENT_KINDS = ("Job", "CronJob", "Pod", "ScheduledSparkApplication")
# Scheduled workloads: a pod per run (the consistency check, the erasure job); periodic in the budget.
PERIODIC_KINDS = ("CronJob", "ScheduledSparkApplication")


def spark_memory_mib(value: str) -> int:
    """Spark/JVM sizes: 512m, 1g, 1024k -> MiB."""
    match = re.fullmatch(r"(\d+)([kmgt])", value.strip().lower())
    if not match:
        raise ValueError(f"not a Spark size: {value!r}")
    number, unit = int(match.group(1)), match.group(2)
    return {"k": number / 1024, "m": number, "g": number * 1024, "t": number * 1024 * 1024}[unit]


def spark_pod_memory_mib(section: dict[str, Any], spark_conf: dict[str, str], role: str) -> int:
    """Memory request (= limit) of a Spark driver/executor pod on Kubernetes (Spark 4):
    memory + max(memoryOverheadFactor * memory, minMemoryOverhead), or memory + memoryOverhead when set."""
    memory = spark_memory_mib(section["memory"])
    if "memoryOverhead" in section:
        return int(memory + spark_memory_mib(section["memoryOverhead"]))
    explicit = spark_conf.get(f"spark.{role}.memoryOverhead")
    if explicit:
        return int(memory + spark_memory_mib(explicit))
    factor = float(spark_conf[f"spark.{role}.memoryOverheadFactor"])
    minimum = spark_memory_mib(spark_conf.get(f"spark.{role}.minMemoryOverhead", "384m"))
    return int(memory + max(int(factor * memory), minimum))


def driver_only(app: dict[str, Any]) -> bool:
    """Spark's driver-pod-only mode: spark.kubernetes.driver.master=local[N] (the CR's driver.kubernetesMaster,
    or the sparkConf key itself) runs the job in the driver pod and creates no executor pods (SPARK-42190)."""
    spec = app["spec"]
    master = spec["driver"].get("kubernetesMaster") or spec.get("sparkConf", {}).get("spark.kubernetes.driver.master", "")
    return master.startswith("local")


def spark_pods(app: dict[str, Any], kind: str = "SparkApplication") -> Iterator[PodSpec]:
    """The driver pod and (unless driver-only) one executor pod spec of a SparkApplication, as the operator
    will create them (``kind``: the owner's, for a ScheduledSparkApplication's template)."""
    spec = app["spec"]
    conf = spec.get("sparkConf", {})
    volumes = spec.get("volumes", [])
    for role in ("driver",) if driver_only(app) else ("driver", "executor"):
        section = spec[role]
        memory = f"{spark_pod_memory_mib(section, conf, role)}Mi"
        # Spark sets the memory limit = request; the operator's webhook replaces it with memoryLimit.
        limit = f"{spark_memory_mib(section['memoryLimit'])}Mi" if "memoryLimit" in section else memory
        container = {
            "name": f"spark-kubernetes-{role}",
            "image": section.get("image", spec["image"]),
            "env": section.get("env", []),
            "volumeMounts": section.get("volumeMounts", []),
            "securityContext": section.get("securityContext", {}),
            # cpu request = coreRequest, limit = coreLimit.
            "resources": {
                "requests": {"cpu": section.get("coreRequest", section.get("cores")), "memory": memory},
                "limits": {"cpu": section.get("coreLimit"), "memory": limit},
            },
        }
        pod = {"containers": [container], "securityContext": section.get("podSecurityContext", {}),
               "volumes": volumes}
        yield PodSpec(f"{ref(app)}:{role}", kind, section.get("labels", {}), pod, False)


def pod_specs(objects: tuple[dict[str, Any], ...]) -> list[PodSpec]:
    pods: list[PodSpec] = []
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS:
            template = obj["spec"]["template"]
            pods.append(PodSpec(ref(obj), obj["kind"], template["metadata"].get("labels", {}),
                                template["spec"], WORKLOAD_KINDS[obj["kind"]]))
        elif obj["kind"] == "CronJob":  # a Job per schedule: its pods are the Job template's
            template = obj["spec"]["jobTemplate"]["spec"]["template"]
            pods.append(PodSpec(ref(obj), "CronJob", template["metadata"].get("labels", {}), template["spec"], False))
        elif obj["kind"] == "SparkApplication":
            pods.extend(spark_pods(obj))
        elif obj["kind"] == "ScheduledSparkApplication":  # a SparkApplication of its template per schedule
            pods.extend(spark_pods({**obj, "spec": obj["spec"]["template"]}, "ScheduledSparkApplication"))
        elif obj["kind"] == "Pod":  # a helm test hook (make verify): runs in the same namespace, same rules
            pods.append(PodSpec(ref(obj), "Pod", obj["metadata"].get("labels", {}), obj["spec"], False))
    return pods


# ---- quantities -----------------------------------------------------------------------------------

_BINARY = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}
_DECIMAL = {"k": 1000 / 1048576, "M": 1e6 / 1048576, "G": 1e9 / 1048576, "T": 1e12 / 1048576}


def memory_mib(quantity: str | int) -> float:
    """A Kubernetes memory quantity in MiB."""
    text = str(quantity)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kMGT])?", text)
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    number, unit = float(match.group(1)), match.group(2)
    if unit is None:
        return number / 1048576
    return number * (_BINARY.get(unit) or _DECIMAL[unit])


def cpu_millis(quantity: str | int | float) -> float:
    text = str(quantity)
    if text.endswith("m"):
        return float(text[:-1])
    return float(text) * 1000


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def default_values() -> dict[str, Any]:
    return load_yaml(CHART / "values.yaml")


# ---- third-party override files -------------------------------------------------------------------


def key_paths(values: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths to the leaves of a values tree (lists are leaves: Helm replaces them whole)."""
    if isinstance(values, dict) and values:
        return [p for key, value in values.items() for p in key_paths(value, (*prefix, str(key)))]
    return [prefix]


def unknown_key_paths(override: Any, defaults: Any, commented: dict[tuple[str, ...], str],
                      defaults_text: str) -> list[str]:
    """Key paths of ``override`` that the chart's default values do not have.

    A path is known when it exists in the defaults, or when it goes below a map the defaults leave empty
    (``{}``: free-form, e.g. resources or yamlApplicationConfig), or when it is in ``commented`` (keys the
    chart documents only as a comment; the regex must match the default values file's text).
    """
    unknown = []
    for path in key_paths(override):
        node = defaults
        for depth, key in enumerate(path):
            if isinstance(node, dict) and key in node:
                node = node[key]
                continue
            if isinstance(node, dict) and not node and depth > 0:
                break  # below an empty map: free-form
            pattern = commented.get(path)
            if pattern is not None and re.search(pattern, defaults_text, re.MULTILINE):
                break
            unknown.append(".".join(path))
            break
    return unknown
