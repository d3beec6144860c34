"""The real Spark Operator 2.5.2 (controller + webhook, `scripts/spark-operator-binary.sh`) against the cluster
tier's kube-apiserver, set up as the Spark Operator chart sets it up, minus the Deployments and Services:

- its RBAC restated in tests/cluster/testdata/spark_operator_rbac.yaml (chart file and version named there),
  created for real; each process authenticates with a token minted for its own ServiceAccount, so every
  request it makes is authorized by exactly those rules;
- the processes run with the arguments the chart's Deployments give them (controller/deployment.yaml and
  webhook/deployment.yaml of chart 2.5.2 rendered with charts/values/spark-operator.yaml), except ports;
- the MutatingWebhookConfiguration / ValidatingWebhookConfiguration as the chart renders them, but with a
  `url` clientConfig (https://localhost:<port>, no Service routing here) instead of `service`, created
  without caBundle like the chart's: the webhook generates its CA and serving cert into its Secret (its
  cert names `localhost` among its SANs) and patches the caBundle in itself;
- the controller submits with `$SPARK_HOME/bin/spark-submit` (internal/controller/sparkapplication/
  submission.go), SPARK_HOME = the venv's pyspark (the pinned Spark, pyproject.toml), master
  k8s://https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT = this API server; spark-submit (fabric8)
  reads the controller's ServiceAccount kubeconfig from KUBECONFIG, as it reads the mounted token in a pod.

No kubelet: driver pods stay Pending, which the controller reports as SUBMITTED.
`driver_pod()` returns a driver pod exactly as the API server stores it (for a later step that runs it).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.kube_apiserver import BIN_DIR, KubeAPIServer, poll
from tests.support.paths import REPO
from tests.support.procs import ServerProcess, free_port

OPERATOR_BIN = BIN_DIR / "spark-operator"
# The sparkconnects CRD (the controller watches SparkConnects too): the chart's copy, installed by the build
OPERATOR_CRD_DIR = BIN_DIR / "spark-operator-crds"
RBAC_FILE = Path(__file__).parent / "testdata" / "spark_operator_rbac.yaml"
RBAC = yaml.safe_load(RBAC_FILE.read_text())
RELEASE_NAMESPACE = RBAC["release"]["namespace"]
OPERATOR_VALUES = yaml.safe_load((REPO / "charts" / "values" / "spark-operator.yaml").read_text())
GROUP, VERSION, PLURAL = "sparkoperator.k8s.io", "v1beta2", "sparkapplications"
# labels the operator puts on the pods it launches (pkg/common/constants.go in 2.5.2)
LAUNCHED_BY = "sparkoperator.k8s.io/launched-by-spark-operator"
APP_NAME_LABEL = "sparkoperator.k8s.io/app-name"
DRIVER_CONTAINER = "spark-kubernetes-driver"  # Spark's default driver container name


def spark_home() -> Path | None:
    """The pinned Spark: the venv's pyspark ships bin/spark-submit and jars/ (with spark-kubernetes)."""
    override = os.environ.get("SPARK_OPERATOR_SPARK_HOME")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("pyspark")
    return Path(spec.origin).parent if spec and spec.origin else None


def missing() -> list[str]:
    problems = []
    if not os.access(OPERATOR_BIN, os.X_OK):
        problems.append(f"{OPERATOR_BIN} (run scripts/spark-operator-binary.sh)")
    if not list(OPERATOR_CRD_DIR.glob("*sparkconnects.yaml")):
        problems.append(f"{OPERATOR_CRD_DIR}/*sparkconnects.yaml (run scripts/spark-operator-binary.sh)")
    home = spark_home()
    if home is None or not os.access(home / "bin" / "spark-submit", os.X_OK):
        problems.append(f"spark-submit of the pinned Spark ({home}/bin/spark-submit; `make venv`)")
    return problems


# --- RBAC ---------------------------------------------------------------------------------------------------


def _rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(rule) for rule in rules]


def without_verb(rules: list[dict[str, Any]], resource: str, verb: str) -> list[dict[str, Any]]:
    """A copy of `rules` with `verb` removed from every rule on `resource` (for the missing-RBAC test)."""
    out = []
    for rule in _rules(rules):
        if resource in rule["resources"] and verb in rule["verbs"]:
            rule = {**rule, "verbs": [v for v in rule["verbs"] if v != verb]}
        if rule["verbs"]:
            out.append(rule)
    return out


def _upsert(create: Callable[..., Any], replace: Callable[..., Any] | None, body: dict[str, Any],
            namespace: str | None = None) -> None:
    """Create, or replace when it exists (replace None: keep the existing object)."""
    name = body["metadata"]["name"]
    try:
        create(*([namespace] if namespace else []), body)
    except ApiException as error:
        if error.status != 409:
            raise
        if replace is not None:
            replace(name, *([namespace] if namespace else []), body)


def ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    with contextlib.suppress(ApiException):
        core.create_namespace({"metadata": {"name": name}})
    core.read_namespace(name)


def apply_rbac(api: client.ApiClient, job_namespaces: Iterable[str],
               job_role_overrides: dict[tuple[str, str], list[dict[str, Any]]] | None = None) -> None:
    """ServiceAccounts, (Cluster)Roles and their bindings of RBAC_FILE; Roles named `jobNamespaceRole` in each
    job namespace. `job_role_overrides[(identity, namespace)]` replaces that Role's rules (missing-RBAC test)."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    overrides = job_role_overrides or {}
    job_namespaces = list(job_namespaces)
    for ns in (RELEASE_NAMESPACE, *job_namespaces):
        ensure_namespace(core, ns)

    def service_account(ns: str, name: str) -> None:
        _upsert(core.create_namespaced_service_account, None, {"metadata": {"name": name, "namespace": ns}}, ns)

    def binding(kind: str, name: str, sa_ns: str, sa: str, ns: str | None = None) -> dict[str, Any]:
        return {"metadata": {"name": name, **({"namespace": ns} if ns else {})},
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}}

    def role(ns: str, name: str, rules: list[dict[str, Any]], sa_ns: str, sa: str) -> None:
        _upsert(rbac.create_namespaced_role, rbac.replace_namespaced_role,
                {"metadata": {"name": name, "namespace": ns}, "rules": _rules(rules)}, ns)
        _upsert(rbac.create_namespaced_role_binding, rbac.replace_namespaced_role_binding,
                binding("Role", name, sa_ns, sa, ns), ns)

    for identity in ("controller", "webhook"):
        spec = RBAC[identity]
        sa = spec["serviceAccount"]
        service_account(RELEASE_NAMESPACE, sa)
        name = spec["clusterRole"]["name"]
        _upsert(rbac.create_cluster_role, rbac.replace_cluster_role,
                {"metadata": {"name": name}, "rules": _rules(spec["clusterRole"]["rules"])})
        _upsert(rbac.create_cluster_role_binding, rbac.replace_cluster_role_binding,
                binding("ClusterRole", name, RELEASE_NAMESPACE, sa))
        role(RELEASE_NAMESPACE, spec["releaseNamespaceRole"]["name"], spec["releaseNamespaceRole"]["rules"],
             RELEASE_NAMESPACE, sa)
        for ns in job_namespaces:
            rules = overrides.get((identity, ns), spec["jobNamespaceRole"]["rules"])
            role(ns, spec["jobNamespaceRole"]["name"], rules, RELEASE_NAMESPACE, sa)
    spark = RBAC["spark"]
    for ns in job_namespaces:
        service_account(ns, spark["serviceAccount"])
        role(ns, spark["jobNamespaceRole"]["name"], spark["jobNamespaceRole"]["rules"], ns, spark["serviceAccount"])


def wait_allowed(kube: KubeAPIServer, username: str, namespace: str, verb: str, resource: str,
                 group: str = "", allowed: bool = True, timeout: float = 15) -> None:
    """RBAC is served from an informer cache: wait until the authorizer answers `allowed`."""
    ns_user = username.split(":")
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns_user[2]}", "system:authenticated"]
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=username, groups=groups, resource_attributes=client.V1ResourceAttributes(
            namespace=namespace, verb=verb, resource=resource, group=group)))
    authz = client.AuthorizationV1Api(kube.api_client())
    poll(lambda: authz.create_subject_access_review(review).status.allowed == allowed, timeout,
         f"RBAC: {username} {verb} {resource} in {namespace} -> {allowed}")


# --- webhook configurations (the chart's, with a url clientConfig) -----------------------------------------


def _webhooks(port: int, job_namespaces: list[str], mutating: bool) -> list[dict[str, Any]]:
    kind = "mutate" if mutating else "validate"
    selector = {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                      "values": job_namespaces}]}
    targets = [("sparkoperator-k8s-io-v1beta2-sparkapplication", "v1beta2", "sparkapplications"),
               ("sparkoperator-k8s-io-v1beta2-scheduledsparkapplication", "v1beta2", "scheduledsparkapplications"),
               ("sparkoperator-k8s-io-v1alpha1-sparkconnect", "v1alpha1", "sparkconnects")]
    hooks = []
    if mutating:
        hooks.append({"name": "mutate--v1-pod.sparkoperator.k8s.io",
                      "path": "/mutate--v1-pod", "objectSelector": {"matchLabels": {LAUNCHED_BY: "true"}},
                      "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                                 "operations": ["CREATE"]}]})
    for suffix, version, plural in targets:
        hooks.append({"name": f"{kind}-{suffix}.sparkoperator.k8s.io", "path": f"/{kind}-{suffix}",
                      "rules": [{"apiGroups": [GROUP], "apiVersions": [version], "resources": [plural],
                                 "operations": ["CREATE", "UPDATE"]}]})
    out = []
    for hook in hooks:
        path = hook.pop("path")
        out.append({**hook, "admissionReviewVersions": ["v1"], "sideEffects": "None",
                    # chart values webhook.failurePolicy / timeoutSeconds (defaults, not overridden by us)
                    "failurePolicy": "Fail", "timeoutSeconds": 10, "namespaceSelector": selector,
                    "clientConfig": {"url": f"https://localhost:{port}{path}"}})
    return out


def register_webhooks(api: client.ApiClient, port: int, job_namespaces: list[str]) -> None:
    admission = client.AdmissionregistrationV1Api(api)
    name = RBAC["webhook"]["webhookConfigurationName"]
    for mutating in (True, False):
        body = {"metadata": {"name": name}, "webhooks": _webhooks(port, job_namespaces, mutating)}
        create = (admission.create_mutating_webhook_configuration if mutating
                  else admission.create_validating_webhook_configuration)
        delete = (admission.delete_mutating_webhook_configuration if mutating
                  else admission.delete_validating_webhook_configuration)
        with contextlib.suppress(ApiException):
            delete(name)
        create(body)


def unregister_webhooks(api: client.ApiClient) -> None:
    """Without the webhook process, failurePolicy Fail would block pods and CRs in the job namespaces."""
    admission = client.AdmissionregistrationV1Api(api)
    name = RBAC["webhook"]["webhookConfigurationName"]
    for delete in (admission.delete_mutating_webhook_configuration,
                   admission.delete_validating_webhook_configuration):
        with contextlib.suppress(ApiException):
            delete(name)


def ca_bundles(api: client.ApiClient) -> list[bytes]:
    """The caBundle of every webhook of both configurations (empty bytes where none is set)."""
    admission = client.AdmissionregistrationV1Api(api)
    name = RBAC["webhook"]["webhookConfigurationName"]
    found = []
    for read in (admission.read_mutating_webhook_configuration, admission.read_validating_webhook_configuration):
        raw = json.loads(read(name, _preload_content=False).data)
        found += [base64.b64decode(w["clientConfig"].get("caBundle", "")) for w in raw["webhooks"]]
    return found


# --- the processes ------------------------------------------------------------------------------------------


@dataclass
class OperatorProcess:
    name: str
    process: ServerProcess
    health_url: str

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def tail(self, lines: int = 80) -> str:
        return f"--- {self.name} ({self.process.log_path}) ---\n{self.process.log_tail(lines)}"


def _start(kube: KubeAPIServer, name: str, identity: str, args: list[str], env: dict[str, str],
           process_logs: dict[str, Callable[[], str]]) -> OperatorProcess:
    access = kube.service_account_kubeconfig(RELEASE_NAMESPACE, RBAC[identity]["serviceAccount"])
    health_port = free_port()
    host, _, port = kube.url.removeprefix("https://").rpartition(":")
    environment = {
        "KUBECONFIG": str(access.kubeconfig),  # the ServiceAccount's token, never the admin's
        # the controller builds spark-submit's master URL from these (pkg/util/util.go GetMasterURL)
        "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
        "HOME": str(kube.workdir),
        **env,
    }
    process = ServerProcess(name, [str(OPERATOR_BIN), *args, f"--health-probe-bind-address=127.0.0.1:{health_port}"],
                            kube.workdir / f"{name}.log", env=environment)
    proc = OperatorProcess(name, process, f"http://127.0.0.1:{health_port}/readyz")
    process_logs[name] = proc.tail
    try:
        process.wait_until(lambda: requests.get(proc.health_url, timeout=1).status_code == 200, 60, "ready (/readyz)")
    except BaseException:
        process.stop()
        raise
    return proc


def start_webhook(kube: KubeAPIServer, job_namespaces: list[str], port: int, cert_dir: Path,
                  process_logs: dict[str, Callable[[], str]]) -> OperatorProcess:
    hook = RBAC["webhook"]
    args = ["webhook", "start", "--zap-log-level=info", "--zap-encoder=console",
            f"--namespaces={','.join(job_namespaces)}",
            f"--webhook-secret-name={hook['secretName']}", f"--webhook-secret-namespace={RELEASE_NAMESPACE}",
            f"--webhook-svc-name={hook['serviceName']}", f"--webhook-svc-namespace={RELEASE_NAMESPACE}",
            f"--webhook-port={port}", f"--webhook-cert-dir={cert_dir}",
            f"--mutating-webhook-name={hook['webhookConfigurationName']}",
            f"--validating-webhook-name={hook['webhookConfigurationName']}",
            "--kube-api-qps=20", "--kube-api-burst=30",
            "--leader-election=true", f"--leader-election-lock-name={hook['leaderElectionLock']}",
            f"--leader-election-lock-namespace={RELEASE_NAMESPACE}"]
    return _start(kube, "spark-operator-webhook", "webhook", args, {}, process_logs)


def start_controller(kube: KubeAPIServer, job_namespaces: list[str],
                     process_logs: dict[str, Callable[[], str]]) -> OperatorProcess:
    controller = OPERATOR_VALUES["controller"]
    args = ["controller", "start", "--zap-log-level=info", "--zap-encoder=console",
            f"--namespaces={','.join(job_namespaces)}", f"--controller-threads={controller['workers']}",
            "--enable-ui-service=true",
            "--leader-election=true", f"--leader-election-lock-name={RBAC['controller']['leaderElectionLock']}",
            f"--leader-election-lock-namespace={RELEASE_NAMESPACE}", "--leader-election-lease-duration=15s",
            "--leader-election-renew-deadline=10s", "--leader-election-retry-period=2s",
            "--workqueue-ratelimiter-bucket-qps=50", "--workqueue-ratelimiter-bucket-size=500",
            "--workqueue-ratelimiter-max-delay=6h", "--driver-pod-creation-grace-period=10s",
            "--max-tracked-executor-per-app=1000", "--kube-api-qps=20", "--kube-api-burst=30",
            "--scheduled-spark-application-timestamp-precision=nanos",
            "--feature-gates=PartialRestart=false,LoadSparkDefaults=false"]
    # controller.env of our values (SPARK_SUBMIT_OPTS: the heap cap of each spark-submit JVM)
    env = {e["name"]: e["value"] for e in controller.get("env", [])}
    env["SPARK_HOME"] = str(spark_home())
    # spark-submit stamps its OS user into the driver's SPARK_USER; the operator's image runs as `spark` (uid 185)
    env["SPARK_USER"] = "spark"
    return _start(kube, "spark-operator-controller", "controller", args, env, process_logs)


@dataclass
class SparkOperator:
    kube: KubeAPIServer
    webhook: OperatorProcess
    controller: OperatorProcess
    job_namespaces: list[str]
    started_seconds: float
    _custom: client.CustomObjectsApi = field(init=False, repr=False)
    _core: client.CoreV1Api = field(init=False, repr=False)

    def __post_init__(self) -> None:
        api = self.kube.api_client()
        self._custom, self._core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def logs(self) -> str:
        return f"{self.controller.tail()}\n{self.webhook.tail()}"

    def application(self, namespace: str, name: str) -> dict[str, Any]:
        return self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def wait_state(self, namespace: str, name: str, states: Iterable[str], timeout: float = 180) -> dict[str, Any]:
        """Until the application's status.applicationState.state is one of `states`; the application."""
        wanted = set(states)

        def reached() -> dict[str, Any] | None:
            app = self.application(namespace, name)
            state = (app.get("status") or {}).get("applicationState", {}).get("state")
            return app if state in wanted else None

        def details() -> str:
            try:
                status = json.dumps(self.application(namespace, name).get("status"), indent=1)
            except ApiException as error:
                status = f"(unreadable: {error.reason})"
            return f"status: {status}\n{self.controller.tail(40)}"

        return poll(reached, timeout, f"SparkApplication {namespace}/{name} in {sorted(wanted)}", interval=0.5,
                    details=details)

    def delete_applications(self, namespace: str) -> None:
        """Delete the applications (the controller deletes their driver pods; no garbage collector runs here)."""
        for app in self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
            with contextlib.suppress(ApiException):
                self._custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                             app["metadata"]["name"])


def driver_pod(kube: KubeAPIServer, namespace: str, app_name: str) -> dict[str, Any]:
    """The driver pod of a SparkApplication exactly as the API server stores it (raw JSON, after the webhook):
    what a later step hands to podman. Found through the application's status.driverInfo.podName."""
    api = kube.api_client()
    app = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, app_name)
    pod_name = app["status"]["driverInfo"]["podName"]
    return json.loads(client.CoreV1Api(api).read_namespaced_pod(pod_name, namespace, _preload_content=False).data)


def driver_container(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == DRIVER_CONTAINER)


def spark_properties(kube: KubeAPIServer, pod: dict[str, Any]) -> dict[str, str]:
    """The Spark conf the driver starts with: spark.properties of the ConfigMap spark-submit created and
    mounted into the driver pod (volume spark-conf-volume-driver)."""
    name = next(v["configMap"]["name"] for v in pod["spec"]["volumes"]
                if v["name"] == "spark-conf-volume-driver")
    cm = client.CoreV1Api(kube.api_client()).read_namespaced_config_map(name, pod["metadata"]["namespace"])
    props = {}
    for line in cm.data["spark.properties"].splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip().replace("\\:", ":").replace("\\=", "=")
    return props


def write_config_map_volume(kube: KubeAPIServer, pod: dict[str, Any], volume: str, dest: Path) -> Path:
    """The files the kubelet would project for the pod's configMap volume `volume` (its `items`, or every key),
    read from the API server, written under `dest` (mode 0644, as a configMap volume's default)."""
    source = next(v["configMap"] for v in pod["spec"]["volumes"] if v["name"] == volume)
    cm = client.CoreV1Api(kube.api_client()).read_namespaced_config_map(source["name"], pod["metadata"]["namespace"])
    data = cm.data or {}
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    for item in items:
        path = dest / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data[item["key"]])
        path.chmod(item.get("mode", source.get("defaultMode", 0o644)))
    return dest


@contextlib.contextmanager
def running_operator(kube: KubeAPIServer, job_namespaces: list[str], workdir: Path,
                     process_logs: dict[str, Callable[[], str]],
                     job_role_overrides: dict[tuple[str, str], list[dict[str, Any]]] | None = None,
                     ) -> Iterator[SparkOperator]:
    """RBAC, webhook (registered, caBundle patched in by itself), then controller; all undone at the end."""
    started = time.monotonic()
    admin = kube.api_client()
    apply_rbac(admin, job_namespaces, job_role_overrides)
    for identity in ("controller", "webhook"):
        user = f"system:serviceaccount:{RELEASE_NAMESPACE}:{RBAC[identity]['serviceAccount']}"
        wait_allowed(kube, user, job_namespaces[-1], "list", "pods")
    port = free_port()
    register_webhooks(admin, port, job_namespaces)
    cert_dir = workdir / "webhook-certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    webhook = controller = None
    try:
        webhook = start_webhook(kube, job_namespaces, port, cert_dir, process_logs)
        poll(lambda: all(ca_bundles(admin)), 60, "caBundle patched into the webhook configurations by the webhook",
             details=webhook.tail)
        controller = start_controller(kube, job_namespaces, process_logs)
        yield SparkOperator(kube, webhook, controller, job_namespaces, time.monotonic() - started)
    finally:
        unregister_webhooks(admin)
        for proc in (controller, webhook):
            if proc is not None:
                proc.process.stop()
