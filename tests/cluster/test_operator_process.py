"""The KSQL operator as a real process (`kopf run --standalone -n NS -m operators.ksql`) against the real
kube-apiserver, authenticated as the ServiceAccount the chart creates (a token minted for it through
the TokenRequest API), so the chart's Role is what authorizes every list, watch, patch and Event; ksqlDB
is the TEST DOUBLE (tests/support/ksqldb_double.py) on a free port in this process.

Creating, changing and deleting labelled ConfigMaps must drive the expected ksqlDB requests, the
operator's annotations (read back from the API) and Events (involvedObject = the ConfigMap). A copy of
the chart's Role with one verb removed must make the operator fail at its job: that is what makes the
positive tests a test of the chart's RBAC. The operator's log is added to the report of any failing
test (conftest `process_logs`); the process is always stopped (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import copy
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from operators.ksql import state, statements
from schemas import topics
from tests.cluster.kube_apiserver import Helm, KubeAPIServer, poll
from tests.support.ksqldb_double import CONTENT_TYPE, KsqlDbDouble
from tests.support.paths import REPO
from tests.support.procs import ServerProcess, free_port

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "marketing-engine"
RELEASE = "marketing-engine"
KOPF = Path(os.environ.get("KOPF_BIN") or REPO / ".venv" / "bin" / "kopf")
KSQL_FILES = {p.name: p.read_text() for p in sorted((REPO / "ksql").glob("*.sql"))}
TOPOLOGY = statements.load(KSQL_FILES)
_LABEL_KEY, _, _LABEL_VALUE = yaml.safe_load((CHART / "values.yaml").read_text())["operator"]["configMapLabel"] \
    .partition("=")
LABELS = {_LABEL_KEY: _LABEL_VALUE or "true"}
COMPONENT = "marketing-engine-ksql-operator"  # kopf's reporting component: the Events' source
WAIT = 20.0  # seconds for the operator to react (it takes well under one)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def stream_sql(source: str, topic: str, derived: str, columns: str = "`id`, `url`") -> str:
    """A JSON source stream over its own topic (PARTITIONS given: no Schema Registry subject involved)
    and a persistent query over it."""
    return (f"CREATE STREAM IF NOT EXISTS {source} (`id` STRING KEY, `url` STRING, `ms` BIGINT)\n"
            f"    WITH (KAFKA_TOPIC = '{topic}', PARTITIONS = 1, VALUE_FORMAT = 'JSON');\n\n"
            f"CREATE STREAM IF NOT EXISTS {derived} AS SELECT {columns} FROM {source}\n"
            f"    WHERE `ms` > 1000 EMIT CHANGES;\n")


# --- the operator process -----------------------------------------------------------------------------------


@dataclass
class Operator:
    namespace: str
    process: ServerProcess
    liveness_url: str

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return f"--- operator log ({self.process.log_path}) ---\n{self.process.log_tail(lines)}"


@contextlib.contextmanager
def run_operator(kube: KubeAPIServer, namespace: str, service_account: str, ksqldb_url: str,
                 process_logs: dict[str, Callable[[], str]], **env: str) -> Iterator[Operator]:
    """`kopf run` as the ServiceAccount (its own kubeconfig via KUBECONFIG), until the with-block ends."""
    if not os.access(KOPF, os.X_OK):
        pytest.fail(f"{KOPF} is missing: `make venv` installs kopf", pytrace=False)
    access = kube.service_account_kubeconfig(namespace, service_account, expiration_seconds=3600)
    # RBAC is served from an informer cache: start once the ServiceAccount's Role is visible to it (every
    # variant of the Role below keeps `list configmaps`), so no 403 in the log comes from that lag
    sar = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=access.username, groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
        resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb="list", resource="configmaps")))
    authz = client.AuthorizationV1Api(kube.api_client())
    poll(lambda: authz.create_subject_access_review(sar).status.allowed, 15,
         f"{access.username} may list configmaps (RBAC cache)")
    port = free_port()
    liveness = f"http://127.0.0.1:{port}/healthz"
    environment = {
        "KUBECONFIG": str(access.kubeconfig),
        # never the in-cluster config of a CI pod: only the ServiceAccount's kubeconfig may authenticate
        "KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": "",
        "KSQLDB_URL": ksqldb_url,
        "WATCH_NAMESPACE": namespace,
        "KSQL_CONFIGMAP_LABEL": "=".join(next(iter(LABELS.items()))),
        "SCHEMA_REGISTRY_URL": "",  # the subject wait has its own tests (tests/engines)
        "KSQL_DRIFT_INTERVAL_SECONDS": "1",
        "KSQL_BACKOFF_SECONDS": "1",
        "KSQL_BACKOFF_MAX_SECONDS": "5",
        "LOG_LEVEL": "INFO",
        "LOG_JSON": "false",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    log_path = kube.workdir / f"ksql-operator-{namespace}.log"
    process = ServerProcess(
        f"ksql-operator ({namespace})",
        [str(KOPF), "run", "--standalone", "-n", namespace, f"--liveness={liveness}", "-m", "operators.ksql"],
        log_path, env=environment, cwd=REPO,
    )
    operator = Operator(namespace, process, liveness)
    key = f"ksql-operator {namespace}"
    process_logs[key] = operator.tail
    try:
        process.wait_until(lambda: requests.get(liveness, timeout=1).status_code == 200, 30, "live (/healthz)")
        yield operator
    except BaseException:
        # keep the log registered: the failing test's report shows it (`_forget_operator_logs` drops it)
        process.stop(grace=10)
        raise
    process.stop(grace=10)  # SIGTERM to its process group, SIGKILL after the grace period
    process_logs.pop(key, None)


# --- reading the results back from the API ------------------------------------------------------------------


def configmap(core: client.CoreV1Api, namespace: str, name: str) -> client.V1ConfigMap:
    return core.read_namespaced_config_map(name, namespace)


def annotations(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, str]:
    return configmap(core, namespace, name).metadata.annotations or {}


def outcomes(notes: dict[str, str]) -> dict[str, str]:
    return {name: record.outcome for name, record in state.decode(notes)[0].items()}


def events(core: client.CoreV1Api, namespace: str, cm: client.V1ConfigMap) -> list[client.CoreV1Event]:
    """Events about exactly this ConfigMap (uid: a re-created ConfigMap of the same name is another one)."""
    found = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={cm.metadata.name}").items
    return [e for e in found if e.involved_object.kind == "ConfigMap" and e.involved_object.uid == cm.metadata.uid]


def reasons(core: client.CoreV1Api, namespace: str, cm: client.V1ConfigMap) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in events(core, namespace, cm)]


def wait_applied(core: client.CoreV1Api, namespace: str, name: str, files: dict[str, str], operator: Operator,
                 timeout: float = WAIT) -> dict[str, str]:
    """Until the operator recorded `files` as applied completely (applied-hash); the annotations."""
    want = statements.content_hash(files)
    return poll(lambda: (a := annotations(core, namespace, name)).get(state.APPLIED_HASH) == want and a,
                timeout, f"{namespace}/{name} applied (annotation {state.APPLIED_HASH})", details=operator.tail)


def wait_event(core: client.CoreV1Api, namespace: str, cm: client.V1ConfigMap, reason: str, operator: Operator,
               timeout: float = WAIT) -> client.CoreV1Event:
    return poll(lambda: next((e for e in events(core, namespace, cm) if e.reason == reason), None),
                timeout, f"Event {reason} for {namespace}/{cm.metadata.name}", details=operator.tail)


def wait_log(operator: Operator, text: str, timeout: float = WAIT) -> None:
    poll(lambda: text in operator.log(), timeout, f"operator log line containing {text!r}", details=operator.tail)


def sent(double: KsqlDbDouble, since: int = 0) -> list[str]:
    """Statements the operator sent to ksqlDB (not its SHOW listings), in order."""
    return [r["body"]["ksql"] for r in double.ksql_requests()[since:] if not r["body"]["ksql"].startswith("SHOW")]


def create_configmap(core: client.CoreV1Api, namespace: str, name: str, files: dict[str, str],
                     labels: dict[str, str] | None = None, notes: dict[str, str] | None = None) -> client.V1ConfigMap:
    return core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=name, labels=LABELS if labels is None else labels, annotations=notes),
        data=files))


def assert_no_forbidden(operator: Operator) -> None:
    log = operator.log()
    assert "Forbidden" not in log and " 403" not in log, operator.tail()


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _forget_operator_logs(process_logs: dict[str, Callable[[], str]]) -> Iterator[None]:
    """Logs of operators a test started stay registered until the test's report is made, then go."""
    before = set(process_logs)
    yield
    for key in set(process_logs) - before:
        process_logs.pop(key, None)


@pytest.fixture(scope="module")
def admin(kube_apiserver: KubeAPIServer) -> client.ApiClient:
    return kube_apiserver.api_client()


@pytest.fixture(scope="module")
def core(admin: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(admin)


@dataclass
class Release:
    namespace: str
    service_account: str
    objects: list[dict[str, Any]]  # what Helm applied

    def operator_objects(self) -> list[dict[str, Any]]:
        """The chart's ServiceAccount, Role and RoleBinding of the operator."""
        return [o for o in self.objects if o["kind"] in ("ServiceAccount", "Role", "RoleBinding")
                and o["metadata"]["labels"].get("app.kubernetes.io/component") == "ksql-operator"]


@pytest.fixture(scope="module")
def release(helm: Helm) -> Iterator[Release]:
    """The chart with its default values (the web Service on a random nodePort: the kind one, 30500, can
    be taken by another release of the session)."""
    namespace = unique("ksql-operator")
    helm.install(RELEASE, CHART, namespace, sets=("web.service.nodePort=null",))
    try:
        objects = helm.manifest(RELEASE, namespace)
        accounts = [o for o in objects if o["kind"] == "ServiceAccount"
                    and o["metadata"]["labels"].get("app.kubernetes.io/component") == "ksql-operator"]
        assert len(accounts) == 1, [o["metadata"]["name"] for o in accounts]
        yield Release(namespace, accounts[0]["metadata"]["name"], objects)
    finally:
        helm.uninstall(RELEASE, namespace, check=False)


@pytest.fixture(scope="module")
def ksqldb() -> Iterator[KsqlDbDouble]:
    double = KsqlDbDouble({t.name for t in topics.KSQL_INPUT_TOPICS}).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture(scope="module")
def operator(kube_apiserver: KubeAPIServer, release: Release, ksqldb: KsqlDbDouble,
             process_logs: dict[str, Callable[[], str]]) -> Iterator[Operator]:
    with run_operator(kube_apiserver, release.namespace, release.service_account, ksqldb.url, process_logs) as op:
        yield op


# --- the operator with the chart's ServiceAccount and Role --------------------------------------------------


def test_operator_runs_as_the_charts_service_account_and_is_live(
        kube_apiserver: KubeAPIServer, release: Release, operator: Operator, ksqldb: KsqlDbDouble) -> None:
    access = kube_apiserver.service_account_kubeconfig(release.namespace, release.service_account)
    as_operator = kube_apiserver.api_client(access.kubeconfig)
    review = client.AuthenticationV1Api(as_operator).create_self_subject_review(client.V1SelfSubjectReview())
    assert review.status.user_info.username == f"system:serviceaccount:{release.namespace}:{release.service_account}"
    assert "system:masters" not in review.status.user_info.groups
    # what the chart's Role does not grant stays forbidden: nothing below works by accident
    with pytest.raises(ApiException) as caught:
        client.CoreV1Api(as_operator).list_namespaced_secret(release.namespace)
    assert caught.value.status == 403
    # kopf's liveness endpoint with the operator's own probe
    probe = requests.get(operator.liveness_url, timeout=5)
    assert probe.status_code == 200
    assert probe.json()["ksqldb"]["url"] == ksqldb.url
    assert operator.process.proc.poll() is None


def test_the_charts_topology_configmap_is_applied_at_start(release: Release, operator: Operator,
                                                           ksqldb: KsqlDbDouble, core: client.CoreV1Api) -> None:
    (chart_cm,) = [o for o in release.objects if o["kind"] == "ConfigMap"
                   and o["metadata"].get("labels", {}).get(_LABEL_KEY) == LABELS[_LABEL_KEY]]
    name = chart_cm["metadata"]["name"]
    notes = wait_applied(core, release.namespace, name, KSQL_FILES, operator)
    assert notes[state.APPLIED_HASH] == TOPOLOGY.content_hash
    assert outcomes(notes) == {s.name: "created" for s in TOPOLOGY.sources}
    assert "SELECT" not in notes[state.STATE], "the state holds digests, never the statements"
    # ksqlDB got the whole topology, one statement per request, in dependency order, the documented type
    assert sorted(ksqldb.sources) == sorted(s.name for s in TOPOLOGY.sources)
    assert ksqldb.created == [s.name for s in TOPOLOGY.sources]
    creates = [r for r in ksqldb.ksql_requests() if r["body"]["ksql"].startswith("CREATE")]
    assert len(creates) == len(TOPOLOGY.sources)
    assert {r["headers"]["Content-Type"] for r in creates} == {CONTENT_TYPE}
    assert ksqldb.deleted_topics == []
    # one Normal Event `Applied` on this ConfigMap, posted by the operator
    cm = configmap(core, release.namespace, name)
    event = wait_event(core, release.namespace, cm, "Applied", operator)
    assert event.type == "Normal" and f"created {len(TOPOLOGY.sources)}" in event.message
    assert (event.source.component, event.reporting_component) == (COMPONENT, COMPONENT)
    assert (event.involved_object.kind, event.involved_object.name) == ("ConfigMap", name)
    # kopf's own diff base is a digest of the data (small annotations), under the operator's prefix
    assert all(len(v) < 4096 for k, v in notes.items() if k.startswith(state.KOPF_PREFIX))
    assert_no_forbidden(operator)


def test_create_change_and_delete_with_the_default_keep_policy(release: Release, operator: Operator,
                                                                ksqldb: KsqlDbDouble, core: client.CoreV1Api) -> None:
    ns, name = release.namespace, unique("ksql-clicks")
    files = {"a.sql": stream_sql("S_PROC_CLICKS", "proc.clicks.v1", "S_PROC_SLOW_CLICKS")}
    # an unlabelled ConfigMap with the same kind of content is none of the operator's business
    ignored = create_configmap(core, ns, unique("not-ksql"), {"a.sql": stream_sql("S_IGNORED", "t.ign", "S_IGN2")},
                               labels={"app": "something-else"})

    # create
    before = len(ksqldb.ksql_requests())
    cm = create_configmap(core, ns, name, files)
    notes = wait_applied(core, ns, name, files, operator)
    assert outcomes(notes) == {"S_PROC_CLICKS": "created", "S_PROC_SLOW_CLICKS": "created"}
    statements_sent = sent(ksqldb, before)
    assert [s.split("(")[0].split(" AS ")[0].strip() for s in statements_sent] == [
        "CREATE STREAM IF NOT EXISTS S_PROC_CLICKS", "CREATE STREAM IF NOT EXISTS S_PROC_SLOW_CLICKS"]
    assert ksqldb.writers("S_PROC_SLOW_CLICKS"), "the persistent query runs"
    assert state.FINALIZER not in (configmap(core, ns, name).metadata.finalizers or []), "keep: no finalizer"
    assert wait_event(core, ns, cm, "Applied", operator).type == "Normal"

    # change: one more value column -> upgraded in place with CREATE OR REPLACE, the query id kept
    query_id = ksqldb.writers("S_PROC_SLOW_CLICKS")[0].id
    changed = {"a.sql": stream_sql("S_PROC_CLICKS", "proc.clicks.v1", "S_PROC_SLOW_CLICKS", "`id`, `url`, `ms`")}
    before = len(ksqldb.ksql_requests())
    core.patch_namespaced_config_map(name, ns, {"data": changed})
    notes = wait_applied(core, ns, name, changed, operator)
    assert outcomes(notes) == {"S_PROC_CLICKS": "unchanged", "S_PROC_SLOW_CLICKS": "replaced"}
    statements_sent = sent(ksqldb, before)
    assert len(statements_sent) == 1 and statements_sent[0].startswith("CREATE OR REPLACE STREAM S_PROC_SLOW_CLICKS")
    assert [q.id for q in ksqldb.writers("S_PROC_SLOW_CLICKS")] == [query_id]
    poll(lambda: sum(r == ("Normal", "Applied") for r in reasons(core, ns, cm)) == 2, WAIT,
         "a second Applied Event for the change", details=operator.tail)

    # delete (keep): the ConfigMap goes at once, ksqlDB keeps everything
    before = len(ksqldb.ksql_requests())
    core.delete_namespaced_config_map(name, ns)
    poll(lambda: name not in {c.metadata.name for c in core.list_namespaced_config_map(ns).items}, WAIT,
         f"{name} deleted")
    assert {"S_PROC_CLICKS", "S_PROC_SLOW_CLICKS"} <= set(ksqldb.sources)
    assert sent(ksqldb, before) == []

    # the unlabelled one: never annotated, its statements never sent
    assert not {k for k in annotations(core, ns, ignored.metadata.name) if k.startswith(("ksql.", "kopf."))}
    assert not any("S_IGNORED" in s for s in sent(ksqldb))
    assert events(core, ns, ignored) == []


def test_drop_policy_adds_a_finalizer_and_deleting_drops_the_objects(
        release: Release, operator: Operator, ksqldb: KsqlDbDouble, core: client.CoreV1Api) -> None:
    ns, name = release.namespace, unique("ksql-drop")
    files = {"a.sql": stream_sql("S_PROC_DROP_SRC", "proc.drop.v1", "S_PROC_DROP_COPY")}
    cm = create_configmap(core, ns, name, files, notes={state.DELETION_POLICY: "drop"})
    wait_applied(core, ns, name, files, operator)
    poll(lambda: state.FINALIZER in (configmap(core, ns, name).metadata.finalizers or []), WAIT,
         f"finalizer {state.FINALIZER}", details=operator.tail)
    query_id = ksqldb.writers("S_PROC_DROP_COPY")[0].id

    before = len(ksqldb.ksql_requests())
    core.delete_namespaced_config_map(name, ns)
    # the operator drops, then removes its finalizer: only then the API server deletes the ConfigMap
    poll(lambda: name not in {c.metadata.name for c in core.list_namespaced_config_map(ns).items}, WAIT,
         f"{name} deleted after the operator released it", details=operator.tail)
    assert "S_PROC_DROP_SRC" not in ksqldb.sources and "S_PROC_DROP_COPY" not in ksqldb.sources
    statements_sent = sent(ksqldb, before)
    assert [s.strip().rstrip(";") for s in statements_sent] == [  # dependants first
        f"TERMINATE {query_id}", "DROP STREAM IF EXISTS S_PROC_DROP_COPY", "DROP STREAM IF EXISTS S_PROC_DROP_SRC"]
    assert not any("DELETE TOPIC" in s.upper() for s in statements_sent), "topics are never deleted"
    assert "proc.drop.v1" in ksqldb.topics and ksqldb.deleted_topics == []
    event = wait_event(core, ns, cm, "Dropped", operator)
    assert "S_PROC_DROP_COPY" in event.message and "S_PROC_DROP_SRC" in event.message, event.message


def test_a_rejected_statement_is_a_warning_event_and_fixing_the_configmap_applies(
        release: Release, operator: Operator, ksqldb: KsqlDbDouble, core: client.CoreV1Api) -> None:
    ns, name = release.namespace, unique("ksql-bad")
    broken = {"a.sql": "CREATE STREAM IF NOT EXISTS S_PROC_FIXED AS SELECT * FROM S_PROC_NOWHERE EMIT CHANGES;\n"}
    before = len(ksqldb.ksql_requests())
    cm = create_configmap(core, ns, name, broken)
    event = wait_event(core, ns, cm, "StatementFailed", operator)
    assert event.type == "Warning"
    assert "S_PROC_NOWHERE does not exist" in event.message and "a.sql" in event.message, event.message
    assert sent(ksqldb, before) == [broken["a.sql"].strip()], "sent once: a permanent failure is not retried"
    notes = poll(lambda: (a := annotations(core, ns, name)).get(state.STATE) and a, WAIT, "state annotation")
    assert outcomes(notes) == {"S_PROC_FIXED": "failed"}
    assert "S_PROC_NOWHERE" in (state.decode(notes)[1] or "")
    assert state.APPLIED_HASH not in notes, "not applied completely"

    fixed = {"a.sql": stream_sql("S_PROC_NOWHERE", "proc.nowhere.v1", "S_PROC_FIXED", "*")}
    core.patch_namespaced_config_map(name, ns, {"data": fixed})
    notes = wait_applied(core, ns, name, fixed, operator)
    assert outcomes(notes) == {"S_PROC_NOWHERE": "created", "S_PROC_FIXED": "created"}
    assert state.decode(notes)[1] is None, "the error is cleared"
    assert {"S_PROC_NOWHERE", "S_PROC_FIXED"} <= set(ksqldb.sources)


def test_drift_is_repaired_through_the_reconcile_request_annotation(
        release: Release, operator: Operator, ksqldb: KsqlDbDouble, core: client.CoreV1Api) -> None:
    """The drift loop patches `reconcile-request` with the official client (as the ServiceAccount)."""
    ns, name = release.namespace, unique("ksql-drift")
    files = {"a.sql": stream_sql("S_PROC_DRIFT_SRC", "proc.drift.v1", "S_PROC_DRIFT")}
    cm = create_configmap(core, ns, name, files)
    wait_applied(core, ns, name, files, operator)
    ksqldb.drop_behind_the_back("S_PROC_DRIFT")  # an admin drops it by hand

    notes = poll(lambda: (a := annotations(core, ns, name)).get(state.RECONCILE_REQUEST) and a, WAIT,
                 "reconcile-request set by the drift check", details=operator.tail)
    assert "S_PROC_DRIFT" in notes[state.RECONCILE_REQUEST]
    poll(lambda: "S_PROC_DRIFT" in ksqldb.sources and ksqldb.writers("S_PROC_DRIFT"), WAIT,
         "S_PROC_DRIFT re-created in ksqlDB", details=operator.tail)
    event = wait_event(core, ns, cm, "DriftRepaired", operator)
    assert event.type == "Warning"
    assert_no_forbidden(operator)


def test_helm_upgrade_keeps_the_operators_annotations(helm: Helm, release: Release, operator: Operator,
                                                      ksqldb: KsqlDbDouble, core: client.CoreV1Api) -> None:
    """Helm 4 applies server-side: the annotations the operator owns on the chart's ConfigMap survive an
    upgrade, so an upgrade does not re-apply the topology."""
    (name,) = [o["metadata"]["name"] for o in release.objects
               if o["kind"] == "ConfigMap" and _LABEL_KEY in o["metadata"].get("labels", {})]
    notes = wait_applied(core, release.namespace, name, KSQL_FILES, operator)
    before = len(ksqldb.ksql_requests())
    helm.upgrade(RELEASE, CHART, release.namespace, (), ("web.replicas=2",), "--reuse-values")
    assert helm.status(RELEASE, release.namespace)["version"] == 2
    after = annotations(core, release.namespace, name)
    for key in (state.APPLIED_HASH, state.STATE):
        assert after.get(key) == notes[key], key
    assert [k for k in after if k.startswith(state.KOPF_PREFIX)] == [k for k in notes if k.startswith(state.KOPF_PREFIX)]
    with contextlib.suppress(AssertionError):  # give a (wrong) re-apply the chance to show up
        poll(lambda: sent(ksqldb, before), 3, "statements after the upgrade")
    assert sent(ksqldb, before) == []


# --- a Role missing one verb makes the operator fail ----------------------------------------------------------


def without(verb: str, group: str, resource: str) -> Callable[[list[dict]], list[dict]]:
    def edit(rules: list[dict]) -> list[dict]:
        out = copy.deepcopy(rules)
        for rule in out:
            if group in rule.get("apiGroups", []) and resource in rule.get("resources", []):
                rule["verbs"] = [v for v in rule["verbs"] if v not in (verb, "*")]
        return [rule for rule in out if rule["verbs"]]  # the API refuses a rule without verbs
    edit.__name__ = f"without_{verb}_{resource}"
    return edit


ROLE_VARIANTS = {
    "chart-role": lambda rules: rules,  # the control: the copy itself works
    "without-patch-configmaps": without("patch", "", "configmaps"),
    "without-create-events": without("create", "", "events"),
    "without-watch-configmaps": without("watch", "", "configmaps"),
}


@pytest.mark.parametrize("variant", list(ROLE_VARIANTS))
def test_a_role_without_a_needed_verb_makes_the_operator_fail(
        variant: str, kube_apiserver: KubeAPIServer, release: Release, admin: client.ApiClient,
        core: client.CoreV1Api, process_logs: dict[str, Callable[[], str]]) -> None:
    """The chart's ServiceAccount, Role and RoleBinding copied into a fresh namespace, the Role edited."""
    ns = unique(f"rbac-{variant}")[:63]
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    objects = {o["kind"]: copy.deepcopy(o) for o in release.operator_objects()}
    assert set(objects) == {"ServiceAccount", "Role", "RoleBinding"}
    role, binding = objects["Role"], objects["RoleBinding"]
    role["rules"] = ROLE_VARIANTS[variant](role["rules"])
    for subject in binding["subjects"]:
        subject["namespace"] = ns
    rbac = client.RbacAuthorizationV1Api(admin)
    for obj in objects.values():
        obj["metadata"]["namespace"] = ns
    core.create_namespaced_service_account(ns, objects["ServiceAccount"])
    rbac.create_namespaced_role(ns, role)
    rbac.create_namespaced_role_binding(ns, binding)
    account = objects["ServiceAccount"]["metadata"]["name"]

    name = "ksql"
    files = {"a.sql": stream_sql("S_RBAC_SRC", "rbac.v1", "S_RBAC_COPY")}
    cm = create_configmap(core, ns, name, files)
    double = KsqlDbDouble().start()
    try:
        with run_operator(kube_apiserver, ns, account, double.url, process_logs) as op:
            user = f'User "system:serviceaccount:{ns}:{account}"'
            if variant == "chart-role":
                wait_applied(core, ns, name, files, op)
                wait_event(core, ns, cm, "Applied", op)
                assert_no_forbidden(op)
            elif variant == "without-patch-configmaps":
                wait_log(op, f'{user} cannot patch resource "configmaps"')
                # ksqlDB got the statements, but the outcome can never be recorded on the ConfigMap
                with pytest.raises(AssertionError):
                    wait_applied(core, ns, name, files, op, timeout=3)
                assert not {k for k in annotations(core, ns, name) if k.startswith(("ksql.", "kopf."))}
            elif variant == "without-create-events":
                wait_applied(core, ns, name, files, op)  # annotations: fine
                wait_log(op, f'{user} cannot create resource "events"')
                with pytest.raises(AssertionError):
                    wait_event(core, ns, cm, "Applied", op, timeout=3)
                assert events(core, ns, cm) == []
            elif variant == "without-watch-configmaps":
                wait_log(op, f'{user} cannot watch resource "configmaps"')
                # kopf lists before it watches, so what exists at start may get applied; a change never is
                changed = {"a.sql": stream_sql("S_RBAC_SRC", "rbac.v1", "S_RBAC_COPY", "`id`, `url`, `ms`")}
                core.patch_namespaced_config_map(name, ns, {"data": changed})
                with pytest.raises(AssertionError):
                    wait_applied(core, ns, name, changed, op, timeout=5)
                assert not any(s.startswith("CREATE OR REPLACE") for s in sent(double))
            else:  # pragma: no cover
                raise AssertionError(variant)
            assert op.process.proc.poll() is None, "the operator keeps running (and retrying)"
    finally:
        double.stop()
