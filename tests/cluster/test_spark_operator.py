"""The SparkApplications through the real Spark Operator 2.5.2: `kubectl apply` of spark/k8s/*.yaml (driver-only,
the default rendering) and of the executor variant (rendered with helm, pipeline.driverOnly.enabled=false) ->
the controller submits each with spark-submit of the pinned Spark (the venv's pyspark 4.1.1) -> the driver pod
objects exist as the mutating webhook leaves them, and each application's status reaches SUBMITTED.

The operator runs under the RBAC its chart gives it (tests/cluster/testdata/spark_operator_rbac.yaml) with the
webhook registered over TLS with the cert it generates itself (tests/cluster/spark_operator.py says how).
Every expectation on a driver pod is derived from the CR it came from (image, args, env, volumes, mounts,
security contexts, service account, resources, lifecycle, Spark conf), so a CR field the operator drops, or
one it rejects (the validating webhook, a failed submission), fails a test; a job namespace whose controller
Role lacks `create pods` must turn the submission into SUBMISSION_FAILED (the RBAC is what is being tested).

No kubelet: driver pods stay Pending (the controller's SUBMITTED). The operator's logs are added to the
report of a failing test (conftest `process_logs`); the time of the module is printed.
"""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.utils import parse_quantity

from tests.cluster import spark_operator as so
from tests.cluster.kube_apiserver import Helm, KubeAPIServer
from tests.support.paths import REPO

pytestmark = pytest.mark.cluster

SPARK_K8S = REPO / "spark" / "k8s"
JOBS = sorted(p.stem for p in SPARK_K8S.glob("*.yaml"))
DRIVER_ONLY_NS = yaml.safe_load_all((SPARK_K8S / f"{JOBS[0]}.yaml").read_text()).__next__()["metadata"]["namespace"]
EXECUTOR_NS = f"{DRIVER_ONLY_NS}-executors"
# a job namespace whose controller Role lacks `create pods` (everything else as the chart gives it)
NO_POD_CREATE_NS = "spark-rbac-no-pod-create"
SUBMIT_TIMEOUT = 240.0  # four spark-submit JVMs at once on a loaded 2-core machine


def load_crs(directory: Path) -> dict[str, dict[str, Any]]:
    """job -> SparkApplication of <directory>/<job>.yaml"""
    return {p.stem: next(d for d in yaml.safe_load_all(p.read_text()) if d) for p in sorted(directory.glob("*.yaml"))}


# --- expectations derived from the CR -----------------------------------------------------------------------


def _subset(want: Any, got: Any, path: str) -> list[str]:
    """Where `got` does not hold `want` (dicts: every key of want; lists and scalars: equal)."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return [f"{path}: {want!r} wanted, {got!r} found"]
        return [p for k, v in want.items() for p in _subset(v, got.get(k), f"{path}.{k}")]
    return [] if want == got else [f"{path}: {want!r} wanted, {got!r} found"]


def _mib(java_size: str) -> float:
    """Spark's JVM sizes ('480m', '1g') in MiB."""
    units = {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024}
    return float(java_size[:-1]) * units[java_size[-1].lower()]


def driver_problems(cr: dict[str, Any], pod: dict[str, Any], props: dict[str, str]) -> list[str]:
    """Every CR field that should reach the driver pod (or its Spark conf) and does not."""
    spec, driver = cr["spec"], cr["spec"]["driver"]
    container = so.driver_container(pod)
    problems: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    check(container["image"] == spec["image"], f"image {container['image']!r}, CR {spec['image']!r}")
    check(container.get("imagePullPolicy") == spec["imagePullPolicy"], f"imagePullPolicy {container.get('imagePullPolicy')}")
    args = container.get("args") or []
    tail = [spec["mainApplicationFile"], *spec.get("arguments", [])]
    check(args[:1] == ["driver"] and args[-len(tail):] == tail,
          f"args {args}: Spark's `driver ... <mainApplicationFile> <arguments>` wanted")
    check(pod["spec"].get("serviceAccountName") == driver["serviceAccount"],
          f"serviceAccountName {pod['spec'].get('serviceAccountName')!r}, CR {driver['serviceAccount']!r}")
    # webhook: env, volumes + mounts, security contexts, memory limit, grace period, lifecycle, owner
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    for var in driver.get("env") or []:
        check(env.get(var["name"]) == var["value"], f"env {var['name']}={env.get(var['name'])!r}, CR {var['value']!r}")
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    for volume in spec.get("volumes") or []:
        live = volumes.get(volume["name"])
        if live is None:
            problems.append(f"volume {volume['name']} missing")
            continue
        for source, config in volume.items():
            if source != "name":
                problems += _subset(config, live.get(source), f"volume {volume['name']}.{source}")
    mounts = {(m["name"], m["mountPath"]) for m in container.get("volumeMounts") or []}
    for mount in driver.get("volumeMounts") or []:
        check((mount["name"], mount["mountPath"]) in mounts, f"volumeMount {mount['name']} at {mount['mountPath']} missing")
    problems += _subset(driver.get("securityContext") or {}, container.get("securityContext") or {},
                        "container securityContext")
    problems += _subset(driver.get("podSecurityContext") or {}, pod["spec"].get("securityContext") or {},
                        "pod securityContext")
    # none in the CR: the API server's default (30 s) stands
    check(pod["spec"].get("terminationGracePeriodSeconds") == driver.get("terminationGracePeriodSeconds", 30),
          f"terminationGracePeriodSeconds {pod['spec'].get('terminationGracePeriodSeconds')}")
    problems += _subset(driver.get("lifecycle") or {}, container.get("lifecycle") or {}, "lifecycle")
    problems += _subset({**cr["metadata"].get("labels", {}), **(driver.get("labels") or {}),
                         so.APP_NAME_LABEL: cr["metadata"]["name"], so.LAUNCHED_BY: "true"},
                        pod["metadata"].get("labels") or {}, "labels")
    owners = [(o["kind"], o["name"]) for o in pod["metadata"].get("ownerReferences") or []]
    check(("SparkApplication", cr["metadata"]["name"]) in owners, f"ownerReferences {owners}")
    # resources: Spark's request = memory + max(factor x memory, minMemoryOverhead); the webhook's limit
    conf = spec.get("sparkConf") or {}
    resources = container.get("resources") or {}
    want_mib = _mib(driver["memory"]) + max(float(conf["spark.driver.memoryOverheadFactor"]) * _mib(driver["memory"]),
                                            _mib(conf["spark.driver.minMemoryOverhead"]))
    got = resources.get("requests", {}).get("memory")
    check(got is not None and parse_quantity(got) == parse_quantity(f"{want_mib:.0f}Mi"),
          f"memory request {got}, {want_mib:.0f}Mi wanted")
    if driver.get("memoryLimit"):
        got = resources.get("limits", {}).get("memory")
        check(got is not None and parse_quantity(got) == parse_quantity(f"{_mib(driver['memoryLimit']):.0f}Mi"),
              f"memory limit {got}, CR {driver['memoryLimit']}")
    for kind, key in (("requests", "coreRequest"), ("limits", "coreLimit")):
        got = resources.get(kind, {}).get("cpu")
        check(got is not None and parse_quantity(got) == parse_quantity(driver[key]), f"cpu {kind} {got}, CR {driver[key]}")
    # the Spark conf the driver starts with
    for key, value in conf.items():
        check(props.get(key) == value, f"sparkConf {key}={props.get(key)!r}, CR {value!r}")
    if driver.get("javaOptions"):
        check(props.get("spark.driver.extraJavaOptions") == driver["javaOptions"],
              f"spark.driver.extraJavaOptions {props.get('spark.driver.extraJavaOptions')!r}")
    return problems


def mode_problems(cr: dict[str, Any], props: dict[str, str]) -> list[str]:
    """Driver-only: Spark's local master inside the driver. Executors: no local master, the executor settings."""
    driver, executor = cr["spec"]["driver"], cr["spec"]["executor"]
    master = props.get("spark.kubernetes.driver.master")
    if "kubernetesMaster" in driver:
        return [] if master == driver["kubernetesMaster"] else [f"spark.kubernetes.driver.master={master!r}"]
    problems = [] if master is None else [f"spark.kubernetes.driver.master={master!r} in the executor variant"]
    wanted = {"spark.executor.instances": str(executor["instances"]), "spark.executor.cores": str(executor["cores"]),
              "spark.executor.memory": executor["memory"],
              "spark.kubernetes.executor.request.cores": executor["coreRequest"],
              "spark.kubernetes.executor.limit.cores": executor["coreLimit"]}
    problems += [f"{k}={props.get(k)!r}, CR {v!r}" for k, v in wanted.items() if props.get(k) != v]
    return problems


# --- fixtures -----------------------------------------------------------------------------------------------


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def operator(kube_apiserver: KubeAPIServer, spark_crds: list[str], process_logs: dict[str, Callable[[], str]],
             tmp_path_factory: pytest.TempPathFactory, tier_timings: dict[str, float]) -> Iterator[so.SparkOperator]:
    problems = so.missing()
    if problems:
        _skip_or_fail(f"missing {'; '.join(problems)}")
    started = time.monotonic()
    kube_apiserver.apply_crds(sorted(so.OPERATOR_CRD_DIR.glob("*sparkconnects.yaml")))
    controller_role = so.RBAC["controller"]["jobNamespaceRole"]["rules"]
    overrides = {("controller", NO_POD_CREATE_NS): so.without_verb(controller_role, "pods", "create")}
    with so.running_operator(kube_apiserver, [DRIVER_ONLY_NS, EXECUTOR_NS, NO_POD_CREATE_NS],
                             tmp_path_factory.mktemp("spark-operator"), process_logs, overrides) as operator:
        yield operator
    for name in ("spark-operator-controller", "spark-operator-webhook"):
        process_logs.pop(name, None)
    tier_timings["Spark Operator tests (tests/cluster/test_spark_operator.py)"] = time.monotonic() - started
    tier_timings["  of which RBAC + webhook + controller up"] = operator.started_seconds


def _apply_and_wait(kube: KubeAPIServer, operator: so.SparkOperator, files: list[Path], namespace: str,
                    crs: dict[str, dict[str, Any]]) -> dict[str, tuple[dict, dict, dict]]:
    """kubectl apply the files; wait for SUBMITTED; job -> (CR, application, driver pod as stored)."""
    for path in files:
        kube.kubectl("apply", "-f", str(path))
    out = {}
    for job, cr in crs.items():
        app = operator.wait_state(namespace, cr["metadata"]["name"], {"SUBMITTED", "RUNNING"}, SUBMIT_TIMEOUT)
        out[job] = (cr, app, so.driver_pod(kube, namespace, cr["metadata"]["name"]))
    return out


@pytest.fixture(scope="module")
def driver_only(kube_apiserver: KubeAPIServer, operator: so.SparkOperator) -> dict[str, tuple[dict, dict, dict]]:
    """spark/k8s/*.yaml as committed (driver-only), applied with kubectl."""
    files = sorted(SPARK_K8S.glob("*.yaml"))
    return _apply_and_wait(kube_apiserver, operator, files, DRIVER_ONLY_NS, load_crs(SPARK_K8S))


@pytest.fixture(scope="module")
def executors(kube_apiserver: KubeAPIServer, operator: so.SparkOperator, helm: Helm,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict, dict]]:
    """The executor variant: scripts/helm-render-pipeline.sh with pipeline.driverOnly.enabled=false, rendered
    for its own namespace, applied with kubectl."""
    out = tmp_path_factory.mktemp("executor-variant")
    env = {**os.environ, "HELM": str(helm.binary), "NAMESPACE": EXECUTOR_NS}
    subprocess.run(["bash", str(REPO / "scripts" / "helm-render-pipeline.sh"), str(out),
                    "--set", "pipeline.driverOnly.enabled=false"], cwd=REPO, env=env, check=True,
                   capture_output=True, text=True, timeout=120)
    crs = load_crs(out)
    assert sorted(crs) == JOBS and all("executor" in cr["spec"] and "cores" in cr["spec"]["executor"]
                                       for cr in crs.values()), "the executor variant did not render executors"
    return _apply_and_wait(kube_apiserver, operator, sorted(out.glob("*.yaml")), EXECUTOR_NS, crs)


# --- tests --------------------------------------------------------------------------------------------------


def test_webhook_registered_over_tls_with_its_own_ca(kube_apiserver: KubeAPIServer, operator: so.SparkOperator) -> None:
    """The webhook created its cert Secret and patched that CA into both configurations (its RBAC allowed it)."""
    admin = kube_apiserver.api_client()
    secret = client.CoreV1Api(admin).read_namespaced_secret(so.RBAC["webhook"]["secretName"], so.RELEASE_NAMESPACE)
    ca = base64.b64decode(secret.data["ca-cert.pem"])
    assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
    bundles = so.ca_bundles(admin)
    assert len(bundles) == 7 and all(b == ca for b in bundles), "caBundle differs from the webhook Secret's CA"


@pytest.mark.parametrize("job", JOBS)
def test_driver_only_application_submitted_and_driver_pod_as_the_cr_says(
        job: str, kube_apiserver: KubeAPIServer, driver_only: dict[str, tuple[dict, dict, dict]]) -> None:
    cr, app, pod = driver_only[job]
    assert app["status"]["applicationState"]["state"] in {"SUBMITTED", "RUNNING"}
    assert app["status"]["driverInfo"]["podName"] == pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Pending"  # no kubelet
    # Spark sets args only: the Spark image's ENTRYPOINT is what runs them
    assert "command" not in so.driver_container(pod)
    props = so.spark_properties(kube_apiserver, pod)
    problems = driver_problems(cr, pod, props) + mode_problems(cr, props)
    assert not problems, f"{job}: driver pod / Spark conf differ from the CR:\n" + "\n".join(problems)


@pytest.mark.parametrize("job", JOBS)
def test_executor_variant_submitted_and_driver_pod_as_the_cr_says(
        job: str, kube_apiserver: KubeAPIServer, executors: dict[str, tuple[dict, dict, dict]]) -> None:
    cr, app, pod = executors[job]
    assert app["status"]["applicationState"]["state"] in {"SUBMITTED", "RUNNING"}
    assert "kubernetesMaster" not in cr["spec"]["driver"]
    props = so.spark_properties(kube_apiserver, pod)
    problems = driver_problems(cr, pod, props) + mode_problems(cr, props)
    assert not problems, f"{job} (executors): driver pod / Spark conf differ from the CR:\n" + "\n".join(problems)


def test_validating_webhook_rejects_a_conf_key_the_operator_manages(kube_apiserver: KubeAPIServer,
                                                                   operator: so.SparkOperator) -> None:
    """Driver-only through sparkConf instead of driver.kubernetesMaster is refused at `kubectl apply`:
    the validating webhook is live, so a CR field the operator rejects fails here, not in the cluster."""
    cr = copy.deepcopy(load_crs(SPARK_K8S)[JOBS[0]])
    cr["metadata"]["name"] = "rejected-conf"
    cr["spec"]["sparkConf"]["spark.kubernetes.driver.master"] = cr["spec"]["driver"].pop("kubernetesMaster")
    result = kube_apiserver.kubectl("apply", "-f", "-", input=yaml.safe_dump(cr), check=False)
    assert result.returncode != 0, f"applied: {result.stdout}"
    assert "spark.kubernetes.driver.master" in result.stderr and "not allowed" in result.stderr, result.stderr


def test_submission_fails_without_the_controllers_create_pods_rule(kube_apiserver: KubeAPIServer,
                                                                   operator: so.SparkOperator) -> None:
    """The same CR in a job namespace where the controller's Role lacks `create pods`: spark-submit (as the
    controller) is forbidden, the application is SUBMISSION_FAILED and no driver pod exists."""
    cr = copy.deepcopy(load_crs(SPARK_K8S)[JOBS[0]])
    cr["metadata"]["namespace"] = NO_POD_CREATE_NS
    kube_apiserver.kubectl("apply", "-f", "-", input=yaml.safe_dump(cr))
    app = operator.wait_state(NO_POD_CREATE_NS, cr["metadata"]["name"], {"SUBMISSION_FAILED", "FAILED"},
                              SUBMIT_TIMEOUT)
    message = app["status"]["applicationState"].get("errorMessage", "")
    assert "forbidden" in message.lower() and "pods" in message, message
    pods = client.CoreV1Api(kube_apiserver.api_client()).list_namespaced_pod(NO_POD_CREATE_NS).items
    assert pods == []


def test_scheduled_erasure_runs_as_an_application_of_its_template(kube_apiserver: KubeAPIServer,
                                                                  operator: so.SparkOperator, helm: Helm,
                                                                  tmp_path: Path) -> None:
    """The chart's ScheduledSparkApplication (spark/jobs/erasure.py --from-topic; docs/forget.md), rendered
    with a schedule of every few seconds and applied with kubectl: the operator's scheduler creates a
    SparkApplication from its template, which is submitted with a driver pod as the template says
    (same checks as the pipeline's applications, the --from-topic argument included)."""
    rendered = helm.run("template", "marketing-engine", str(REPO / "charts" / "marketing-engine"), "--namespace",
                        DRIVER_ONLY_NS, "--kube-version", "1.36.1", "--set", "pipeline.enabled=true",
                        "--set", "erasure.schedule=@every 5s", "--show-only", "templates/spark-erasure.yaml").stdout
    (scheduled,) = [d for d in yaml.safe_load_all(rendered) if d]
    assert scheduled["kind"] == "ScheduledSparkApplication"
    path = tmp_path / "erasure.yaml"
    path.write_text(rendered)
    kube_apiserver.kubectl("apply", "-f", str(path))
    api = client.CustomObjectsApi(kube_apiserver.api_client())
    name = scheduled["metadata"]["name"]
    deadline = time.monotonic() + SUBMIT_TIMEOUT
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not runs:
        runs = [a for a in api.list_namespaced_custom_object(so.GROUP, so.VERSION, DRIVER_ONLY_NS, so.PLURAL)["items"]
                if any(o.get("name") == name for o in a["metadata"].get("ownerReferences") or [])]
        time.sleep(1)
    assert runs, f"no SparkApplication created by ScheduledSparkApplication {name}"
    try:
        app_name = runs[0]["metadata"]["name"]
        app = operator.wait_state(DRIVER_ONLY_NS, app_name, {"SUBMITTED", "RUNNING"}, SUBMIT_TIMEOUT)
        assert app["spec"]["arguments"] == ["--from-topic"] and app["spec"]["restartPolicy"]["type"] == "Never"
        pod = so.driver_pod(kube_apiserver, DRIVER_ONLY_NS, app_name)
        cr = {"metadata": {**app["metadata"]}, "spec": scheduled["spec"]["template"]}
        props = so.spark_properties(kube_apiserver, pod)
        problems = driver_problems(cr, pod, props) + mode_problems(cr, props)
        assert not problems, "erasure: driver pod / Spark conf differ from the template:\n" + "\n".join(problems)
        assert so.driver_container(pod)["args"][-1] == "--from-topic"
        assert "lifecycle" not in so.driver_container(pod)  # no preStop: nothing to stop between batches
    finally:
        kube_apiserver.kubectl("delete", "-f", str(path), "--wait=false")
