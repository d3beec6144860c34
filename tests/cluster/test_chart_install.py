"""`helm install` of charts/marketing-engine for real against the kube-apiserver fixture: with the default
values and with every override file the manifests tier renders (tests/manifests/values/*.yaml), then
`helm upgrade` with changed values and `helm rollback`.

No kubelet and no controllers: pods never start, so nothing here waits for readiness (no --wait). What
is proven is that the API server accepts every object Helm applies (schema, defaulting, admission, the
Spark Operator CRDs' structural validation, RBAC objects), stores it as rendered (nothing pruned or
rewritten), and that Helm's release lifecycle works with the chart (Helm 4: server-side apply,
`lookup` of the generated Secrets on upgrade, immutable Job templates, removed objects deleted).

Releases are installed one after the other, each in a fresh namespace, and uninstalled at the end of
their test: the web Service's fixed kind nodePort (30500) can be allocated only once per cluster.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.utils import parse_quantity

from tests.cluster.kube_apiserver import Helm, KubeAPIServer, poll
from tests.manifests.chart import RENDER_CASES
from tests.support.paths import REPO

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "marketing-engine"
KSQL_DIR = REPO / "ksql"
RELEASE = "marketing-engine"
SPARK = ("sparkoperator.k8s.io", "v1beta2", "sparkapplications")
# What kopf and the operator need (docs/ksql-operator.md, "RBAC"): the chart's Role must grant at least this.
OPERATOR_NEEDS = {("", "configmaps"): {"list", "watch", "patch"}, ("", "events"): {"create"}}
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"


# --- helpers ------------------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values merge: maps merge recursively, anything else replaces, null deletes."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def effective_values(files: tuple[Path, ...] = (), **overrides: Any) -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in files:
        values = merge(values, yaml.safe_load(path.read_text()) or {})
    return merge(values, overrides)


def _same_scalar(want: Any, got: Any) -> bool:
    if want == got:
        return True
    if isinstance(want, str | int | float) and isinstance(got, str | int | float) and \
            not isinstance(want, bool) and not isinstance(got, bool):
        try:  # quantities the API server prints canonically ("1000m" -> "1", "0.5" -> "500m")
            return parse_quantity(want) == parse_quantity(got)
        except (ValueError, TypeError):
            return False
    return False


def differences(want: Any, got: Any, path: str = "") -> tuple[list[str], int]:
    """Where the live object does not hold what Helm rendered (live may add defaults and status).
    Returns (problems, number of leaves compared)."""
    if isinstance(want, dict):
        problems, leaves = [], 0
        for key, value in want.items():
            sub = f"{path}.{key}" if path else key
            if value is None or value == {} or value == [] or (value == "" and key not in got):
                continue  # null / empty = not set; the API omits empty structs and (omitempty) strings
            if not isinstance(got, dict) or key not in got:
                problems.append(f"{sub}: missing in the live object (pruned or dropped)")
                continue
            p, n = differences(value, got[key], sub)
            problems += p
            leaves += n
        return problems, leaves
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{path}: {want!r} rendered, {got!r} live"], 1
        problems, leaves = [], 0
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            p, n = differences(w, g, f"{path}[{i}]")
            problems += p
            leaves += n
        return problems, leaves
    return ([] if _same_scalar(want, got) else [f"{path}: {want!r} rendered, {got!r} live"]), 1


def read_live(dynamic: DynamicClient, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    api = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    ns = obj["metadata"].get("namespace", namespace) if api.namespaced else None
    return api.get(name=obj["metadata"]["name"], namespace=ns).to_dict()


def ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def secret_text(core: client.CoreV1Api, namespace: str, name: str, key: str) -> str:
    return base64.b64decode(core.read_namespaced_secret(name, namespace).data[key]).decode()


def env_of(container: client.V1Container) -> dict[str, Any]:
    return {e.name: (e.value if e.value_from is None else e.value_from) for e in container.env or []}


def can(admin: client.ApiClient, user: str, namespace: str, verb: str, resource: str, group: str = "") -> bool:
    """Ask the real RBAC authorizer (SubjectAccessReview) whether `user` may do this."""
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
        resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb=verb, resource=resource,
                                                        group=group)))
    return client.AuthorizationV1Api(admin).create_subject_access_review(review).status.allowed


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin(kube_apiserver: KubeAPIServer) -> client.ApiClient:
    return kube_apiserver.api_client()


@pytest.fixture(scope="module")
def dynamic(admin: client.ApiClient, spark_crds: list[str]) -> DynamicClient:
    """Discovery after the CRDs exist, so SparkApplications resolve."""
    return DynamicClient(admin)


def create_existing_secrets(core: client.CoreV1Api, namespace: str, values: dict[str, Any]) -> dict[str, dict]:
    """The Secrets an override says exist outside the chart (`existingSecret`), created before the install."""
    made = {}
    for component in ("redis", "web"):
        section = values[component]
        auth = section.get("auth", section)
        name = auth.get("existingSecret")
        if section.get("enabled") and name:
            key = auth["existingSecretKey"]
            data = {key: base64.b64encode(f"provided-by-the-admin-{component}".encode()).decode()}
            core.create_namespaced_secret(namespace, client.V1Secret(
                metadata=client.V1ObjectMeta(name=name, labels={"owner": "admin"}), data=data))
            made[name] = data
    return made


def check_components(admin: client.ApiClient, namespace: str, values: dict[str, Any],
                     objects: list[dict[str, Any]], existing: dict[str, dict]) -> None:
    """Read the release back by kind and check it against the effective values (not the rendering)."""
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    net, batch, apps = client.NetworkingV1Api(admin), client.BatchV1Api(admin), client.AppsV1Api(admin)
    rendered = {(o["kind"], o["metadata"]["name"]) for o in objects}

    # NetworkPolicies: exactly the rendered ones, with a default deny of all ingress when enabled
    policies = net.list_namespaced_network_policy(namespace).items
    assert {("NetworkPolicy", p.metadata.name) for p in policies} == {k for k in rendered if k[0] == "NetworkPolicy"}
    if values["networkPolicy"]["enabled"]:
        deny = [p for p in policies if not p.spec.pod_selector.match_labels and not p.spec.ingress]
        assert deny and deny[0].spec.policy_types == ["Ingress"], [p.metadata.name for p in policies]
    else:
        assert policies == []

    # The operator's ServiceAccount, Role and RoleBinding, and what the RBAC authorizer makes of them
    roles = rbac.list_namespaced_role(namespace).items
    bindings = rbac.list_namespaced_role_binding(namespace).items
    if values["operator"]["enabled"]:
        assert len(roles) == 1 and len(bindings) == 1, ([r.metadata.name for r in roles], bindings)
        role, binding = roles[0], bindings[0]
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role.rules:
            for group in rule.api_groups:
                for resource in rule.resources:
                    granted.setdefault((group, resource), set()).update(rule.verbs)
        for key, verbs in OPERATOR_NEEDS.items():
            assert verbs <= granted.get(key, set()), f"Role {role.metadata.name} lacks {key}: {verbs}"
        assert (binding.role_ref.kind, binding.role_ref.name) == ("Role", role.metadata.name)
        (subject,) = binding.subjects
        assert (subject.kind, subject.namespace) == ("ServiceAccount", namespace)
        core.read_namespaced_service_account(subject.name, namespace)
        user = f"system:serviceaccount:{namespace}:{subject.name}"
        poll(lambda: can(admin, user, namespace, "patch", "configmaps"), 10, f"{user} may patch configmaps")
        for verb, resource in (("watch", "configmaps"), ("list", "configmaps"), ("create", "events")):
            assert can(admin, user, namespace, verb, resource), (verb, resource)
        for verb, resource in (("get", "secrets"), ("delete", "configmaps"), ("create", "pods")):
            assert not can(admin, user, namespace, verb, resource), (verb, resource)
        assert not can(admin, user, "default", "list", "configmaps"), "the Role must stay namespaced"
    else:
        assert roles == [] and bindings == []

    # Storage: the Delta claim (static PV on kind, else the StorageClass), Redis' claim when persistent
    claims = {c.metadata.name: c for c in core.list_namespaced_persistent_volume_claim(namespace).items}
    delta = next(c for name, c in claims.items() if name.endswith("-delta"))
    assert delta.spec.resources.requests["storage"] == values["delta"]["size"]
    if values["delta"]["hostPath"]["enabled"]:
        pv = core.read_persistent_volume(delta.spec.volume_name)
        assert (pv.spec.claim_ref.namespace, pv.spec.claim_ref.name) == (namespace, delta.metadata.name)
        assert pv.spec.host_path.path == values["delta"]["hostPath"]["path"]
    else:
        assert delta.spec.storage_class_name == (values["delta"]["storageClass"] or None)
    redis_claims = [n for n in claims if n.endswith("-redis-data")]
    assert bool(redis_claims) == bool(values["redis"]["enabled"] and values["redis"]["persistence"]["enabled"])

    # Secrets: generated (random, letters and digits) unless an existing one is named; then untouched
    deployments = {d.metadata.labels["app.kubernetes.io/component"]: d
                   for d in apps.list_namespaced_deployment(namespace, label_selector=INSTANCE).items}
    given_values = {"redis": values["redis"]["auth"]["password"], "web": values["web"]["secretKey"]}
    for component, env_name, length in (("redis", "REDIS_PASSWORD", 32), ("web", "SECRET_KEY", 48)):
        if not values[component]["enabled"]:
            assert component not in deployments
            continue
        container = deployments[component].spec.template.spec.containers[0]
        source = env_of(container)[env_name].secret_key_ref
        value = secret_text(core, namespace, source.name, source.key)
        if source.name in existing:
            live = core.read_namespaced_secret(source.name, namespace)
            assert live.data == existing[source.name] and live.metadata.labels == {"owner": "admin"}
            assert ("Secret", source.name) not in rendered
        elif given_values[component]:
            assert ("Secret", source.name) in rendered and value == given_values[component]
        else:
            assert ("Secret", source.name) in rendered
            assert len(value) == length and value.isalnum(), f"{component}: generated secret {value!r}"

    # Jobs: seed and topics when enabled, named by the hash of their inputs
    jobs = {j.metadata.labels["app.kubernetes.io/component"]: j
            for j in batch.list_namespaced_job(namespace, label_selector=INSTANCE).items}
    assert ("seed" in jobs) == values["seed"]["enabled"] and ("topics" in jobs) == values["topics"]["enabled"]
    if values["seed"]["enabled"]:
        env = env_of(jobs["seed"].spec.template.spec.containers[0])
        assert env["SEED_CUSTOMERS"] == str(values["seed"]["customers"])
        assert jobs["seed"].spec.template.spec.restart_policy in ("OnFailure", "Never")

    # The KSQL ConfigMap, labelled for the operator, the ksql/ files byte for byte
    key, _, label_value = values["operator"]["configMapLabel"].partition("=")
    labelled = core.list_namespaced_config_map(namespace, label_selector=f"{key}={label_value or 'true'}").items
    if values["ksql"]["configMap"]:
        (cm,) = labelled
        assert cm.data == {p.name: p.read_text() for p in sorted(KSQL_DIR.glob("*.sql"))}
    else:
        assert labelled == []

    # The SparkApplications (CRD-validated): one per enabled job, with the job's executor count
    apps_live = client.CustomObjectsApi(admin).list_namespaced_custom_object(*SPARK[:2], namespace, SPARK[2])["items"]
    pipeline = values["pipeline"]
    if pipeline["enabled"]:
        enabled = {job: cfg for job, cfg in pipeline["jobs"].items() if cfg.get("enabled")}
        by_job = {a["metadata"]["name"].rsplit("-", 1)[1]: a for a in apps_live}
        assert set(by_job) == set(enabled)
        for job, cfg in enabled.items():
            spec = by_job[job]["spec"]
            instances = (cfg.get("executor") or {}).get("instances", pipeline["executor"]["instances"])
            assert spec["executor"]["instances"] == instances, job
            assert spec["driver"]["serviceAccount"] == pipeline["serviceAccount"]
            assert spec["mainApplicationFile"].endswith(f"/{job}.py")
    else:
        assert apps_live == []


def check_uninstalled(admin: client.ApiClient, namespace: str, existing: dict[str, dict]) -> None:
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
    assert apps.list_namespaced_deployment(namespace, label_selector=INSTANCE).items == []
    assert core.list_namespaced_service(namespace, label_selector=INSTANCE).items == []
    assert core.list_namespaced_config_map(namespace, label_selector=INSTANCE).items == []
    assert client.NetworkingV1Api(admin).list_namespaced_network_policy(namespace).items == []
    assert client.RbacAuthorizationV1Api(admin).list_namespaced_role(namespace).items == []
    assert client.BatchV1Api(admin).list_namespaced_job(namespace, label_selector=INSTANCE).items == []
    secrets = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
    assert secrets == set(existing), "only the admin's own Secrets remain (and no Helm release record)"
    # deleted, but held by the pvc-protection finalizer that only kube-controller-manager removes
    for claim in core.list_namespaced_persistent_volume_claim(namespace).items:
        assert claim.metadata.deletion_timestamp is not None, claim.metadata.name


# --- install: defaults and each override file ---------------------------------------------------------------


@pytest.mark.parametrize(("label", "files"), RENDER_CASES, ids=[label for label, _ in RENDER_CASES])
def test_chart_installs_and_the_api_stores_every_object_as_rendered(
        label: str, files: tuple[Path, ...], helm: Helm, spark_crds: list[str], admin: client.ApiClient,
        dynamic: DynamicClient) -> None:
    namespace = unique(f"chart-{label}")
    values = effective_values(files)
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    existing = create_existing_secrets(client.CoreV1Api(admin), namespace, values)
    installed = False
    try:
        helm.install(RELEASE, CHART, namespace, values=files)
        installed = True
        status = helm.status(RELEASE, namespace)
        assert (status["info"]["status"], status["version"]) == ("deployed", 1)
        assert status.get("apply_method") == "ssa", "Helm 4 applies server-side"

        objects = helm.manifest(RELEASE, namespace)
        kinds = {o["kind"] for o in objects}
        assert {"ServiceAccount", "Deployment", "Service", "PersistentVolumeClaim"} & kinds, kinds
        problems: list[str] = []
        compared = 0
        for obj in objects:
            live = read_live(dynamic, obj, namespace)
            assert live["metadata"]["uid"], ref(obj)
            assert live["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
            found, leaves = differences(obj, live)
            problems += [f"{ref(obj)}: {p}" for p in found]
            compared += leaves
        assert problems == [], "\n".join(problems)
        assert compared > 20 * len(objects), "the comparison must actually look at the objects"
        if values["pipeline"]["enabled"]:
            assert "SparkApplication" in kinds

        check_components(admin, namespace, values, objects, existing)
    finally:
        if installed:
            helm.uninstall(RELEASE, namespace, check=False)
    check_uninstalled(admin, namespace, existing)


# --- upgrade and rollback -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lifecycle_release(helm: Helm, spark_crds: list[str], admin: client.ApiClient) -> Iterator[str]:
    namespace = unique("chart-lifecycle")
    helm.install(RELEASE, CHART, namespace)
    try:
        yield namespace
    finally:
        helm.uninstall(RELEASE, namespace, check=False)


def snapshot(admin: client.ApiClient, namespace: str) -> dict[str, Any]:
    core, apps, batch = client.CoreV1Api(admin), client.AppsV1Api(admin), client.BatchV1Api(admin)
    deployments = {d.metadata.labels["app.kubernetes.io/component"]: d
                   for d in apps.list_namespaced_deployment(namespace, label_selector=INSTANCE).items}
    jobs = {j.metadata.labels["app.kubernetes.io/component"]: j
            for j in batch.list_namespaced_job(namespace, label_selector=INSTANCE).items}
    secrets = {s.metadata.name: {k: base64.b64decode(v).decode() for k, v in (s.data or {}).items()}
               for s in core.list_namespaced_secret(namespace, label_selector=INSTANCE).items}
    spark_apps = client.CustomObjectsApi(admin).list_namespaced_custom_object(*SPARK[:2], namespace, SPARK[2])
    return {
        "spark_apps": sorted(a["metadata"]["name"] for a in spark_apps["items"]),
        "web_replicas": deployments["web"].spec.replicas,
        # LOG_LEVEL of our own components (ksqlDB and Redis are configured otherwise)
        "log_levels": {c: env_of(d.spec.template.spec.containers[0])["LOG_LEVEL"] for c, d in deployments.items()
                       if c in ("web", "ksql-operator")},
        "jobs": {c: (j.metadata.name, j.metadata.uid) for c, j in jobs.items()},
        "seed_customers": env_of(jobs["seed"].spec.template.spec.containers[0])["SEED_CUSTOMERS"],
        "policies": sorted(p.metadata.name for p in
                           client.NetworkingV1Api(admin).list_namespaced_network_policy(namespace).items),
        "secrets": secrets,
        "ksql_uid": core.list_namespaced_config_map(
            namespace, label_selector="app.kubernetes.io/component=ksql").items[0].metadata.uid,
    }


CHANGED = ("web.replicas=2", "seed.customers=2500", "networkPolicy.enabled=false", "logging.level=DEBUG",
           "pipeline.enabled=true")


def test_helm_upgrade_with_changed_values_and_rollback(helm: Helm, lifecycle_release: str,
                                                       admin: client.ApiClient, dynamic: DynamicClient) -> None:
    namespace = lifecycle_release
    before = snapshot(admin, namespace)
    assert before["web_replicas"] == 1 and before["policies"] and before["spark_apps"] == [], before
    assert set(before["secrets"]) == {f"{RELEASE}-redis-auth", f"{RELEASE}-web-secret"}, before["secrets"]

    helm.upgrade(RELEASE, CHART, namespace, sets=CHANGED)
    upgraded = snapshot(admin, namespace)
    status = helm.status(RELEASE, namespace)
    assert (status["info"]["status"], status["version"]) == ("deployed", 2)
    assert upgraded["web_replicas"] == 2
    jobs_enabled = [j for j, cfg in effective_values()["pipeline"]["jobs"].items() if cfg["enabled"]]
    assert len(upgraded["spark_apps"]) == len(jobs_enabled) > 0, "the SparkApplications are created on upgrade"
    assert set(upgraded["log_levels"].values()) == {"DEBUG"}
    assert upgraded["policies"] == [], "objects no longer rendered are deleted"
    # a changed seed is a new Job (its template is immutable); the unchanged topics Job is left alone
    assert upgraded["seed_customers"] == "2500"
    assert upgraded["jobs"]["seed"][0] != before["jobs"]["seed"][0]
    assert upgraded["jobs"]["topics"] == before["jobs"]["topics"]
    # generated secrets survive the upgrade (the chart's `lookup` of the live Secret)
    assert upgraded["secrets"] == before["secrets"]
    assert upgraded["ksql_uid"] == before["ksql_uid"]

    helm.rollback(RELEASE, namespace, 1)
    rolled = snapshot(admin, namespace)
    history = helm.history(RELEASE, namespace)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert "Rollback to 1" in history[-1]["description"]
    assert rolled["web_replicas"] == 1
    assert rolled["spark_apps"] == [], "and deleted by the rollback"
    assert set(rolled["log_levels"].values()) == {"INFO"}
    assert rolled["policies"] == before["policies"]
    assert rolled["jobs"]["seed"][0] == before["jobs"]["seed"][0], "the revision-1 seed Job is back"
    assert rolled["seed_customers"] == before["seed_customers"]
    assert rolled["jobs"]["topics"] == before["jobs"]["topics"]
    assert rolled["secrets"] == before["secrets"]
    # every object of revision 1 is live again as rendered then; the revision-2-only seed Job is gone
    for obj in helm.manifest(RELEASE, namespace, revision=1):
        problems, _ = differences(obj, read_live(dynamic, obj, namespace))
        assert problems == [], (ref(obj), problems)
    with pytest.raises(ApiException) as gone:
        client.BatchV1Api(admin).read_namespaced_job(upgraded["jobs"]["seed"][0], namespace)
    assert gone.value.status == 404


# Values that reach a Job's pod template but not (today) the hash in the Job's name, with what the
# upgraded Jobs must then show: (container field or env var, expected value, components).
JOB_TEMPLATE_CHANGES = {
    "logging.level=WARNING": ("env:LOG_LEVEL", "WARNING", ("seed",)),
    "logging.json=false": ("env:LOG_JSON", "false", ("seed",)),
    "images.pullPolicy=Always": ("image_pull_policy", "Always", ("seed", "topics")),
}


@pytest.mark.parametrize("setting", list(JOB_TEMPLATE_CHANGES))
def test_helm_upgrade_of_a_value_in_a_jobs_pod_template(setting: str, helm: Helm, lifecycle_release: str,
                                                        admin: client.ApiClient) -> None:
    """A Job's pod template is immutable: every value that reaches it must also change the Job's name
    (the chart hashes its inputs into it), otherwise the API refuses the upgrade."""
    namespace = lifecycle_release
    before = snapshot(admin, namespace)
    helm.upgrade(RELEASE, CHART, namespace, (), (setting,), "--reuse-values")
    assert helm.status(RELEASE, namespace)["info"]["status"] == "deployed"
    field, expected, components = JOB_TEMPLATE_CHANGES[setting]
    after = snapshot(admin, namespace)
    for component in components:
        job = client.BatchV1Api(admin).read_namespaced_job(after["jobs"][component][0], namespace)
        container = job.spec.template.spec.containers[0]
        value = env_of(container)[field[4:]] if field.startswith("env:") else getattr(container, field)
        assert value == expected, (component, field, value)
    assert after["secrets"] == before["secrets"]


def test_helm_upgrade_refuses_a_value_the_schema_does_not_know(helm: Helm, lifecycle_release: str) -> None:
    """values.schema.json is closed: a typo fails the upgrade before anything reaches the cluster."""
    revisions = len(helm.history(RELEASE, lifecycle_release))
    proc = helm.run("upgrade", RELEASE, str(CHART), "--namespace", lifecycle_release,
                    "--set", "web.replicaz=3", check=False)
    assert proc.returncode != 0
    assert "replicaz" in proc.stderr, proc.stderr
    assert len(helm.history(RELEASE, lifecycle_release)) == revisions


def test_an_object_the_crd_would_prune_is_caught_by_the_comparison(admin: client.ApiClient,
                                                                    dynamic: DynamicClient) -> None:
    """Guard of the guard: a field the SparkApplication schema does not know, accepted with
    fieldValidation=Ignore (client-side apply, Helm 3), is pruned by the API and `differences` says so."""
    namespace = unique("chart-prune")
    client.CoreV1Api(admin).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    body = {"apiVersion": "sparkoperator.k8s.io/v1beta2", "kind": "SparkApplication",
            "metadata": {"name": "typo"},
            "spec": {"type": "Python", "mode": "cluster", "sparkVersion": "4.1.1", "image": "x:1",
                     "mainApplicationFile": "local:///a.py", "driver": {"cores": 1},
                     "executor": {"instances": 1, "instance": 2}}}
    client.CustomObjectsApi(admin).create_namespaced_custom_object(
        *SPARK[:2], namespace, SPARK[2], body, field_validation="Ignore")
    problems, _ = differences(body, read_live(dynamic, body, namespace))
    assert problems == ["spec.executor.instance: missing in the live object (pruned or dropped)"]
