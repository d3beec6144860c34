"""A SparkApplication from `kubectl apply` to a running job, with everything but the kubelet real.

The bronze CR, rendered by the chart as `make chart-render` renders spark/k8s/bronze.yaml but with
`--set kafka.bootstrapServers=<test broker> --set kafka.schemaRegistryUrl=<registry double>
--set pipeline.jobs.bronze.env.TOPIC_PREFIX=<fresh prefix>` (values the chart exposes; nothing else of the
CR changes, which the test checks against the committed file), goes through the real Spark Operator 2.5.2
(tests/cluster/spark_operator.py) into a driver pod object. Its driver container is then started with podman
exactly as the API server stores it (tests/support/podman.py: image, args with the image's ENTRYPOINT, env,
mounts, uid/gid/fsGroup, read-only root, capabilities, no privilege escalation, seccomp, memory/cpu limits),
the kubelet's share supplied by the test:

- `status.podIP` (the only valueFrom) is 127.0.0.1: the container shares the host's network, as the test
  engines listen there;
- the ConfigMap volume `spark-conf-volume-driver` is the ConfigMap spark-submit created in the API server,
  written into a host directory; the Delta PVC is a host directory owned as the kubelet leaves it (fsGroup);
  emptyDirs are tmpfs;
- the ServiceAccount token volume is left out, and no KUBERNETES_SERVICE_* variables are set: in
  driver-only mode (`spark.kubernetes.driver.master=local[2]`) the driver talks to no API server, which
  this run shows (it has no way to reach one and commits anyway);
- stopping is the kubelet's: the pod's preStop hook (exec), then SIGTERM with the pod's grace period.

Produced records must be committed to the bronze Delta table in the mounted directory, and the container
must end with exit code 0. Needs podman and the Spark image in its storage (the images tier builds it, and
runs before this tier in `make test`): skipped on a laptop without them, failed under CI.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import topics
from tests.cluster import spark_operator as so
from tests.cluster.kube_apiserver import Helm, KubeAPIServer
from tests.engines.test_spark_pipeline import T0, order
from tests.support import pipeline, podman
from tests.support.paths import REPO

pytestmark = pytest.mark.cluster

JOB = "bronze"
COMMITTED = REPO / "spark" / "k8s" / f"{JOB}.yaml"
NAMESPACE = "spark-podman"  # its own job namespace: the other module's applications never meet this one
CONF_VOLUME = "spark-conf-volume-driver"  # Spark's name for the driver's properties ConfigMap volume
SUBMIT_TIMEOUT = 240.0
COMMIT_TIMEOUT = 420.0  # a JVM + Python start and the first micro-batch on a loaded 2-core machine
EVENTS = 12


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")  # session: checked before the API server starts
def engine() -> podman.Engine:
    try:
        return podman.engine()
    except RuntimeError as exc:
        _skip_or_fail(str(exc))
        raise


@pytest.fixture(scope="session")  # session: checked before the API server starts
def spark_image(engine: podman.Engine) -> str:
    """The image the CR names, in the engine's storage (the images tier builds it; nothing is pulled)."""
    image = next(d for d in yaml.safe_load_all(COMMITTED.read_text()) if d)["spec"]["image"]
    if not engine.exists(image):
        _skip_or_fail(f"{image} is not in {engine.name}'s storage: the images tier builds it (make test-images)")
    return image


@pytest.fixture(scope="module")
def operator(kube_apiserver: KubeAPIServer, spark_crds: list[str], process_logs: dict[str, Callable[[], str]],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[so.SparkOperator]:
    problems = so.missing()
    if problems:
        _skip_or_fail(f"missing {'; '.join(problems)}")
    kube_apiserver.apply_crds(sorted(so.OPERATOR_CRD_DIR.glob("*sparkconnects.yaml")))
    with so.running_operator(kube_apiserver, [NAMESPACE], tmp_path_factory.mktemp("spark-operator-podman"),
                             process_logs) as operator:
        yield operator
    for name in ("spark-operator-controller", "spark-operator-webhook"):
        process_logs.pop(name, None)


def render_cr(helm: Helm, out: Path, *values: str) -> dict[str, Any]:
    """The job's SparkApplication as scripts/helm-render-pipeline.sh renders it (make chart-render), in NAMESPACE."""
    env = {**os.environ, "HELM": str(helm.binary), "NAMESPACE": NAMESPACE}
    args = [a for value in values for a in ("--set-string", value)]
    subprocess.run(["bash", str(REPO / "scripts" / "helm-render-pipeline.sh"), str(out), *args], cwd=REPO,
                   env=env, check=True, capture_output=True, text=True, timeout=120)
    return next(d for d in yaml.safe_load_all((out / f"{JOB}.yaml").read_text()) if d)


def expected_cr(env: dict[str, str]) -> dict[str, Any]:
    """The committed CR with only what must change for this machine: namespace and the env values given."""
    cr = copy.deepcopy(next(d for d in yaml.safe_load_all(COMMITTED.read_text()) if d))
    cr["metadata"]["namespace"] = NAMESPACE
    driver_env = cr["spec"]["driver"]["env"]
    for name, value in env.items():
        item = next((e for e in driver_env if e["name"] == name), None)
        if item is None:
            driver_env.append({"name": name, "value": value})
        else:
            item["value"] = value
    return cr


def kubelet_env(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Values for the container's valueFrom variables, as the kubelet resolves them for a host-network pod."""
    fields = {"status.podIP": "127.0.0.1", "metadata.name": pod["metadata"]["name"],
              "metadata.namespace": pod["metadata"]["namespace"]}
    env = {}
    for item in container.get("env") or []:
        ref = (item.get("valueFrom") or {}).get("fieldRef")
        if ref and ref["fieldPath"] in fields:
            env[item["name"]] = fields[ref["fieldPath"]]
    return env  # any other valueFrom is left for container_argv to name


def service_account_token_volumes(pod: dict[str, Any]) -> list[str]:
    """The projected volume(s) the ServiceAccount admission plugin adds (kube-api-access-*)."""
    return [v["name"] for v in pod["spec"].get("volumes") or []
            if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources") or [])]


def delta_rows(table: Path) -> int:
    """Records added by the table's commits so far."""
    rows = 0
    for commit in sorted((table / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                rows += json.loads(action["add"]["stats"])["numRecords"]
    return rows


def test_bronze_driver_pod_from_the_operator_runs_in_podman_and_commits_to_delta(
        engine: podman.Engine, spark_image: str, tmp_path: Path, kube_apiserver: KubeAPIServer,
        operator: so.SparkOperator, helm: Helm, kafka_broker, schema_registry,
        process_logs: dict[str, Callable[[], str]], tier_timings: dict[str, float]) -> None:
    started = time.monotonic()

    # the CR: the chart's rendering with the test engines' addresses and a fresh topic prefix
    prefix = pipeline.new_prefix()
    overrides = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "SCHEMA_REGISTRY_URL": schema_registry.url,
                 "TOPIC_PREFIX": prefix}
    cr = render_cr(helm, tmp_path / "crs", f"kafka.bootstrapServers={overrides['KAFKA_BOOTSTRAP_SERVERS']}",
                   f"kafka.schemaRegistryUrl={overrides['SCHEMA_REGISTRY_URL']}",
                   f"pipeline.jobs.{JOB}.env.TOPIC_PREFIX={prefix}")
    assert cr == expected_cr(overrides), "the rendered CR differs from spark/k8s/bronze.yaml in more than " \
                                         "namespace and the engines' env"

    # source records on the test broker, under the CR's prefix, serialized through the registry double
    env = {e["name"]: e["value"] for e in cr["spec"]["driver"]["env"]}
    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, env["DELTA_ROOT"], prefix)
    pipeline.create_topics(kafka_broker, settings)
    produced = pipeline.produce(kafka_broker, settings, [
        (topics.ORDER_PLACED, f"o{i}", order(f"o{i}", f"c{i % 3}", T0 + i, 10.0 + i)) for i in range(EVENTS)])

    # kubectl apply -> the operator submits -> the driver pod object, as stored
    kube_apiserver.kubectl("apply", "-f", str(tmp_path / "crs" / f"{JOB}.yaml"))
    name = cr["metadata"]["name"]
    operator.wait_state(NAMESPACE, name, {"SUBMITTED"}, SUBMIT_TIMEOUT)
    submitted = time.monotonic()
    pod = so.driver_pod(kube_apiserver, NAMESPACE, name)
    (tmp_path / "driver-pod.json").write_text(json.dumps(pod, indent=1))
    spec, container = pod["spec"], so.driver_container(pod)
    assert container["image"] == cr["spec"]["image"] == spark_image and "command" not in container

    # the kubelet's share: volumes, the pod IP, no ServiceAccount token
    delta = podman.prepare_volume(tmp_path / "delta", spec)
    # configMap volumes (Spark's properties, the operator's pod template) from the ConfigMaps in the API server
    volumes = {v["name"]: so.write_config_map_volume(kube_apiserver, pod, v["name"], tmp_path / "cm" / v["name"])
               for v in spec["volumes"] if "configMap" in v}
    assert CONF_VOLUME in volumes
    volumes["delta"] = delta
    token_volumes = service_account_token_volumes(pod)
    container_name = podman.unique_name("me-operator-bronze-driver")
    argv = podman.container_argv(spec, container, image=container["image"], engine=engine, name=container_name,
                                 env=kubelet_env(pod, container), volumes=volumes, omit_volumes=token_volumes)
    log = tmp_path / "driver.log"
    driver = podman.start(engine, argv, container_name, log)
    process_logs["bronze driver container"] = lambda: driver.log_tail(80)
    try:
        delta_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "delta")
        table = delta / Path(settings.table("bronze", "order_placed")).relative_to(delta_mount)

        deadline = time.monotonic() + COMMIT_TIMEOUT
        while not ((table / "_delta_log" / "00000000000000000000.json").is_file() and delta_rows(table) >= produced):
            if driver.proc.poll() is not None:
                pytest.fail(f"the driver container exited with {driver.proc.returncode} before committing:\n"
                            f"{driver.log_tail(80)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{produced} rows not committed to {table} within {COMMIT_TIMEOUT:.0f}s:\n"
                            f"{driver.log_tail(80)}", pytrace=False)
            time.sleep(1)
        first_commit = time.monotonic()

        # the kubelet's stop: the preStop hook, then SIGTERM within the grace period
        hook = container["lifecycle"]["preStop"]["exec"]["command"]
        grace = int(spec["terminationGracePeriodSeconds"])
        # the hook returns when the job has exited, and so has the container then: its exec may be cut off
        hook_done = engine.run("exec", container_name, *hook, timeout=grace + 30, check=False)
        exit_code = driver.terminate(grace)
    finally:
        driver.stop()
        process_logs.pop("bronze driver container", None)
    text = log.read_text(errors="replace")
    assert exit_code == 0, f"exit code {exit_code} after preStop + SIGTERM (hook: {hook_done.returncode} " \
                           f"{hook_done.stderr.strip()}):\n{driver.log_tail(80)}"
    assert "stopped on SIGTERM" in text, "the preStop hook did not stop the job:\n" + driver.log_tail(80)
    assert "Traceback" not in text, driver.log_tail(120)
    assert delta_rows(table) == produced == EVENTS
    assert table.stat().st_uid == spec["securityContext"]["runAsUser"]
    # driver-only: the conf the driver was given names the API server as master, but it ran locally
    props = so.spark_properties(kube_apiserver, pod)
    assert props["spark.master"].startswith("k8s://") and props["spark.kubernetes.driver.master"] == "local[2]"
    assert "KubernetesClusterManager: Running Spark with local[2]" in text, driver.log_tail(120)

    total = time.monotonic() - started
    tier_timings["Spark Operator + podman: bronze CR to a Delta commit"] = total
    print(f"\nbronze: render + produce + kubectl apply -> SUBMITTED {submitted - started:.1f}s, "
          f"container start -> first commit {first_commit - submitted:.1f}s, total {total:.1f}s")
