"""Policy over every rendered pod spec (Deployments, Jobs, and the driver/executor pods of every
SparkApplication): restricted Pod Security, resources, probes, pinned images, standard labels; plus
wiring checks (Services reach their pods, NetworkPolicies cover every pod, RBAC is minimal)."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.manifests.chart import (
    NAMESPACE,
    RENDER_CASES,
    REPO,
    PodSpec,
    by_kind,
    cpu_millis,
    memory_mib,
    pod_specs,
    ref,
    render,
    render_text,
)

CASE_IDS = [c[0] for c in RENDER_CASES]
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
# Containers allowed a writable root filesystem, and why (everything else is read-only).
WRITABLE_ROOT = {
    "ksqldb": "the image's start script renders ksql-server.properties and log4j files into /etc/ksqldb",
}
# Pods that run without liveness/readiness probes, and why.
NO_PROBES = {
    "Job": "run-to-completion: the Job controller's backoffLimit is the health check",
    "CronJob": "a Job per schedule (the consistency check): its exit code and activeDeadlineSeconds are the check",
    "Pod": "the helm test hook (make verify): runs once, its exit code is the result",
    "SparkApplication": "Spark pods have no health endpoint; the Spark Operator restarts the application "
    "(restartPolicy with retries and intervals) when the driver exits",
    "ScheduledSparkApplication": "a SparkApplication per schedule (the erasure job): runs to its end; its "
    "state (COMPLETED / FAILED) is the check, and the next schedule runs it again",
}


def _all_pods() -> list[tuple[str, PodSpec]]:
    pods = []
    for label, values in RENDER_CASES:
        pods += [(label, p) for p in pod_specs(render(values))]
    return pods


ALL_PODS = _all_pods()
POD_IDS = [f"{label}:{p.owner}" for label, p in ALL_PODS]


def test_every_workload_kind_is_covered():
    owners = {p.owner.split(":")[0].split("/")[0] for _, p in ALL_PODS}
    assert {"Deployment", "Job", "CronJob", "SparkApplication"} <= owners
    assert len({p.owner for _, p in ALL_PODS}) >= 14


@pytest.mark.parametrize("label,pod", ALL_PODS, ids=POD_IDS)
def test_restricted_pod_security(label, pod):
    psc = pod.spec.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True, pod.owner
    assert isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0, f"{pod.owner}: numeric non-root uid"
    assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", pod.owner
    assert not pod.spec.get("hostNetwork") and not pod.spec.get("hostPID") and not pod.spec.get("hostIPC")
    for volume in pod.spec.get("volumes", []):
        assert "hostPath" not in volume, f"{pod.owner}: inline hostPath volume {volume['name']}"
    for c in pod.containers:
        sc = c.get("securityContext", {})
        where = f"{pod.owner} container {c['name']}"
        assert sc.get("allowPrivilegeEscalation") is False, where
        assert sc.get("privileged", False) is False, where
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not sc.get("capabilities", {}).get("add"), where
        assert sc.get("seccompProfile", {}).get("type", "RuntimeDefault") == "RuntimeDefault", where
        if c["name"] in WRITABLE_ROOT:
            assert sc.get("readOnlyRootFilesystem") is False, f"{where}: listed as an exception, update the list"
        else:
            assert sc.get("readOnlyRootFilesystem") is True, where


@pytest.mark.parametrize("label,pod", ALL_PODS, ids=POD_IDS)
def test_resources_requests_and_limits(label, pod):
    for c in pod.containers:
        resources = c.get("resources", {})
        where = f"{pod.owner} container {c['name']}"
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert resources.get(kind, {}).get(resource) not in (None, ""), f"{where}: {kind}.{resource}"
        assert memory_mib(resources["requests"]["memory"]) <= memory_mib(resources["limits"]["memory"]), where
        assert cpu_millis(resources["requests"]["cpu"]) <= cpu_millis(resources["limits"]["cpu"]), where


@pytest.mark.parametrize("label,pod", ALL_PODS, ids=POD_IDS)
def test_probes_on_long_running_containers(label, pod):
    if not pod.long_running:
        assert pod.kind in NO_PROBES, f"{pod.owner}: not long-running, but not an explained exception"
        return
    for c in pod.spec["containers"]:
        for probe in ("livenessProbe", "readinessProbe"):
            assert probe in c, f"{pod.owner} container {c['name']}: no {probe}"


@pytest.mark.parametrize("label,pod", ALL_PODS, ids=POD_IDS)
def test_images_pinned(label, pod):
    for c in pod.containers:
        image = c["image"]
        name, _, tag = image.rpartition("/")[2].partition(":")
        assert name and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag), f"{image}: explicit tag"
        assert tag != "latest", image
        assert c.get("imagePullPolicy", "IfNotPresent") == "IfNotPresent", image


@pytest.mark.parametrize("label,pod", ALL_PODS, ids=POD_IDS)
def test_standard_labels_on_pods(label, pod):
    missing = [k for k in STANDARD_LABELS if k not in pod.labels]
    assert missing == [], f"{pod.owner}: {missing}"
    assert pod.labels["app.kubernetes.io/part-of"] == "marketing-engine"


@pytest.mark.parametrize("label,values", RENDER_CASES, ids=CASE_IDS)
def test_standard_labels_on_every_object(label, values):
    for obj in render(values):
        labels = obj["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert missing == [], f"{ref(obj)}: {missing}"


@pytest.mark.parametrize("label,values", RENDER_CASES, ids=CASE_IDS)
def test_service_account_tokens_only_where_needed(label, values):
    """Only the KSQL operator talks to the Kubernetes API."""
    for pod in pod_specs(render(values)):
        if pod.kind in ("SparkApplication", "ScheduledSparkApplication"):
            continue  # the driver needs its token to create executors (ServiceAccount of the Spark Operator)
        wants = pod.labels.get("app.kubernetes.io/component") == "ksql-operator"
        assert pod.spec.get("automountServiceAccountToken") is wants, pod.owner


@pytest.mark.parametrize("label,values", RENDER_CASES, ids=CASE_IDS)
def test_services_select_pods_and_named_ports(label, values):
    objects = render(values)
    pods = [p for p in pod_specs(objects) if p.kind == "Deployment"]
    for svc in by_kind(objects, "Service"):
        selector = svc["spec"]["selector"]
        targets = [p for p in pods if all(p.labels.get(k) == v for k, v in selector.items())]
        assert targets, f"{ref(svc)} selects no pod"
        for port in svc["spec"]["ports"]:
            names = {cp.get("name") for p in targets for c in p.spec["containers"] for cp in c.get("ports", [])}
            assert port["targetPort"] in names, f"{ref(svc)} targetPort {port['targetPort']}"


def _selects(policy: dict, labels: dict[str, str]) -> bool:
    match = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in match.items())


@pytest.mark.parametrize("label,values", RENDER_CASES, ids=CASE_IDS)
def test_network_policies(label, values):
    objects = render(values)
    policies = by_kind(objects, "NetworkPolicy")
    if not policies:
        return  # networkPolicy.enabled=false
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress")]
    assert len(deny) == 1, "one default-deny-ingress policy"
    pods = pod_specs(objects)
    for svc in by_kind(objects, "Service"):
        # Every Service port is let in by some policy that selects the Service's pods.
        target = next(p for p in pods if all(p.labels.get(k) == v for k, v in svc["spec"]["selector"].items()))
        container_ports = {cp["name"]: cp["containerPort"] for c in target.spec["containers"] for cp in c["ports"]}
        for port in svc["spec"]["ports"]:
            number = container_ports[port["targetPort"]]
            allowed = [
                p for p in policies if _selects(p, target.labels) and p is not deny[0]
                and any(number in [pp["port"] for pp in rule.get("ports", [])] or not rule.get("ports")
                        for rule in p["spec"].get("ingress", []))
            ]
            assert allowed, f"{ref(svc)} port {number}: no NetworkPolicy lets traffic in"
    spark = [p for p in pods if p.kind == "SparkApplication"]
    for pod in spark:
        assert any(_selects(p, pod.labels) and p is not deny[0] for p in policies), pod.owner


@pytest.mark.parametrize("driver_only", [True, False])
def test_spark_pod_to_pod_traffic_is_allowed_only_when_executors_run(driver_only):
    """Driver-only applications talk to no other Spark pod: no rule lets Spark pods reach each other then;
    with executors, one policy lets driver and executors of the release talk (RPC, block manager)."""
    objects = render((), ("pipeline.enabled=true", f"pipeline.driverOnly.enabled={str(driver_only).lower()}"))
    apps = by_kind(objects, "SparkApplication")
    assert all(("kubernetesMaster" in a["spec"]["driver"]) == driver_only for a in apps)
    spark_labels = {"marketing-engine.io/workload": "spark", "app.kubernetes.io/instance": "marketing-engine"}
    pod_to_pod = [
        p for p in by_kind(objects, "NetworkPolicy") if _selects(p, spark_labels)
        and any(not rule.get("ports") and any(f.get("podSelector", {}).get("matchLabels") == spark_labels
                                              for f in rule.get("from", []))
                for rule in p["spec"].get("ingress", []))
    ]
    assert len(pod_to_pod) == (0 if driver_only else 1), [p["metadata"]["name"] for p in pod_to_pod]
    roles = {p.owner.rsplit(":", 1)[1] for p in pod_specs(objects) if p.kind == "SparkApplication"}
    assert roles == ({"driver"} if driver_only else {"driver", "executor"})


def test_the_consistency_check_is_let_in_nowhere_and_calls_out_freely():
    """The CronJob's pod only calls Kafka and the registry (another namespace): egress is open, and no rule
    but the default deny selects it."""
    objects = render(())
    (pod,) = [p for p in pod_specs(objects) if p.kind == "CronJob"]
    policies = by_kind(objects, "NetworkPolicy")
    assert not any("Egress" in p["spec"].get("policyTypes", []) for p in policies)
    selecting = [p for p in policies if _selects(p, pod.labels)]
    assert [p["spec"]["podSelector"] for p in selecting] == [{}]
    assert not any(f.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "consistency"
                   for p in policies for rule in p["spec"].get("ingress", []) for f in rule.get("from", []))


def test_redis_is_reachable_only_from_the_web_ui():
    objects = render(())
    (policy,) = [p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("-redis")]
    (rule,) = policy["spec"]["ingress"]
    assert [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for f in rule["from"]] == ["web"]


def _doc_rbac_rules() -> dict:
    """The Role rules docs/ksql-operator.md states (the operator's author owns that list)."""
    doc = (REPO / "docs" / "ksql-operator.md").read_text()
    section = doc.split("## RBAC", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    rules = yaml.safe_load(section)["rules"]
    return {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"]) for r in rules}


def test_operator_rbac_is_exactly_what_the_operator_documents():
    objects = render(())
    (role,) = by_kind(objects, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): sorted(r["verbs"]) for r in role["rules"]}
    assert rules == _doc_rbac_rules()
    assert rules == {
        (("",), ("configmaps",)): ["list", "patch", "watch"],
        (("",), ("events",)): ["create"],
    }
    assert by_kind(objects, "ClusterRole") == [] and by_kind(objects, "ClusterRoleBinding") == []
    (binding,) = by_kind(objects, "RoleBinding")
    (sa,) = by_kind(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    (deploy,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].endswith("ksql-operator")]
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]


def test_generated_secrets_are_random_and_not_in_values():
    first = {s["metadata"]["name"]: s["data"] for s in by_kind(render(()), "Secret")}
    render_text.cache_clear()
    second = {s["metadata"]["name"]: s["data"] for s in by_kind(render(()), "Secret")}
    assert set(first) == {"marketing-engine-redis-auth", "marketing-engine-web-secret"}
    assert all(first[name] != second[name] for name in first), "generated secrets must not be constants"


def test_existing_secrets_replace_generated_ones():
    (values,) = [v for label, v in RENDER_CASES if label == "persistent"]
    objects = render(values)
    assert by_kind(objects, "Secret") == []
    (web,) = [d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].endswith("-web")]
    env = {e["name"]: e for e in web["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "marketing-engine-web-credentials",
                                                              "key": "secret-key"}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "marketing-engine-redis-credentials",
                                                                  "key": "redis-password"}


@pytest.mark.parametrize("label,values", RENDER_CASES, ids=CASE_IDS)
def test_pods_sharing_the_delta_volume_share_its_group(label, values):
    """One fsGroup for every pod that mounts the Delta claim, or the kubelet would re-chown the volume
    back and forth between the Spark pods and the seed."""
    groups = set()
    for pod in pod_specs(render(values, ("pipeline.enabled=true",))):
        claims = {v.get("persistentVolumeClaim", {}).get("claimName") for v in pod.spec.get("volumes", [])}
        if "marketing-engine-delta" in claims:
            groups.add(pod.spec["securityContext"]["fsGroup"])
    assert groups == {185}
