"""The cluster fixture is a real API server: admin access, CRD structural validation, RBAC for a
ServiceAccount token minted through the TokenRequest API."""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.kube_apiserver import ADMIN_USER, KubeAPIServer
from tests.support.paths import SHARED

pytestmark = pytest.mark.cluster

SPARK_CRD = SHARED / "schemas" / "spark-operator" / "sparkoperator.k8s.io_sparkapplications.yaml"
SPARK_GROUP, SPARK_VERSION, SPARK_PLURAL = "sparkoperator.k8s.io", "v1beta2", "sparkapplications"
T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def eventually(fn: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Retry fn until it returns a truthy value without raising (for caches that converge, e.g. RBAC)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = fn()
            if result:
                return result
        except ApiException as error:
            last = error
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout}s (last error: {last})")


def message(error: ApiException) -> str:
    """The `message` of the Status object the API server answered with."""
    return json.loads(error.body)["message"]


def create_namespace(api: client.ApiClient, prefix: str) -> str:
    name = unique(prefix)
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="module")
def admin(kube_apiserver: KubeAPIServer) -> client.ApiClient:
    return kube_apiserver.api_client()


# --- the server itself --------------------------------------------------------------------------------------


def test_apiserver_is_kubernetes_1_36_and_ready(kube_apiserver: KubeAPIServer,
                                                admin: client.ApiClient) -> None:
    version = client.VersionApi(admin).get_code()
    assert (version.major, version.minor) == ("1", "36"), version
    assert version.git_version.startswith("v1.36."), version.git_version
    assert kube_apiserver.get("/readyz?verbose", token=kube_apiserver.admin_token)[0] == 200
    assert kube_apiserver.url.startswith("https://127.0.0.1:")
    print(f"kube-apiserver {version.git_version} ready in {kube_apiserver.startup_seconds:.1f}s")


def test_admin_token_authenticates_as_system_masters(admin: client.ApiClient) -> None:
    review = client.AuthenticationV1Api(admin).create_self_subject_review(client.V1SelfSubjectReview())
    assert review.status.user_info.username == ADMIN_USER
    assert "system:masters" in review.status.user_info.groups


def test_anonymous_and_bad_tokens_are_refused(kube_apiserver: KubeAPIServer) -> None:
    # anonymous: authenticated as system:anonymous, then denied by RBAC
    status, body = kube_apiserver.get("/api/v1/namespaces")
    assert status == 403, body
    assert "system:anonymous" in body
    # a token nobody issued: authentication fails outright
    status, body = kube_apiserver.get("/api/v1/namespaces", token="not-a-real-token")  # noqa: S106
    assert status == 401, body


def test_admin_creates_namespace_and_configmap(admin: client.ApiClient) -> None:
    core = client.CoreV1Api(admin)
    namespace = create_namespace(admin, "cm")
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings", labels={"app": "marketing-engine"}),
        data={"TOPIC": "marketing.events", "PARTITIONS": "3"},
    ))
    read = core.read_namespaced_config_map("settings", namespace)
    assert read.data == {"TOPIC": "marketing.events", "PARTITIONS": "3"}
    assert read.metadata.labels == {"app": "marketing-engine"}
    assert [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items
            if cm.metadata.name == "settings"] == ["settings"]


# --- CRD validation -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_crd(kube_apiserver) -> str:
    """The Spark Operator 2.5.2 SparkApplication CRD, created (or already there) and Established."""
    return kube_apiserver.apply_crds([SPARK_CRD])[0]


VALID_SPARK_APP = {
    "apiVersion": f"{SPARK_GROUP}/{SPARK_VERSION}",
    "kind": "SparkApplication",
    "metadata": {"name": "bronze-ingest"},
    "spec": {
        "type": "Python",
        "mode": "cluster",
        "image": "marketing-engine/spark:0.1.0",
        "mainApplicationFile": "local:///opt/app/spark/bronze.py",
        "sparkVersion": "4.1.1",
        "restartPolicy": {"type": "OnFailure", "onFailureRetries": 3, "onFailureRetryInterval": 10},
        "driver": {"cores": 1, "memory": "1g", "serviceAccount": "spark-operator-spark"},
        "executor": {"instances": 1, "cores": 1, "memory": "1g"},
    },
}


DELETE = object()  # spark_app(..., field=DELETE) removes the field


def spark_app(name: str, **spec_changes: object) -> dict:
    app = copy.deepcopy(VALID_SPARK_APP)
    app["metadata"]["name"] = name
    for dotted, value in spec_changes.items():
        target = app["spec"]
        *parents, leaf = dotted.split("__")
        for parent in parents:
            target = target[parent]
        if value is DELETE:
            del target[leaf]
        else:
            target[leaf] = value
    return app


def create_spark_app(admin: client.ApiClient, namespace: str, body: dict, **kwargs: str) -> dict:
    return client.CustomObjectsApi(admin).create_namespaced_custom_object(
        SPARK_GROUP, SPARK_VERSION, namespace, SPARK_PLURAL, body, **kwargs)


def test_spark_crd_is_established_and_accepts_a_valid_application(spark_crd: str,
                                                                  admin: client.ApiClient) -> None:
    namespace = create_namespace(admin, "spark")
    created = create_spark_app(admin, namespace, spark_app("valid"), field_validation="Strict")
    assert created["spec"]["executor"] == {"instances": 1, "cores": 1, "memory": "1g"}
    read = client.CustomObjectsApi(admin).get_namespaced_custom_object(
        SPARK_GROUP, SPARK_VERSION, namespace, SPARK_PLURAL, "valid")
    assert read["spec"]["mainApplicationFile"] == "local:///opt/app/spark/bronze.py"
    assert read["metadata"]["uid"] == created["metadata"]["uid"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"executor__instances": "two"}, "spec.executor.instances"),  # wrong type
        ({"type": "Go"}, "spec.type"),  # not in the enum
        ({"sparkVersion": DELETE}, "spec.sparkVersion"),  # required
        ({"restartPolicy__onFailureRetries": 1.5}, "spec.restartPolicy.onFailureRetries"),  # int32, not 1.5
    ],
    ids=["wrong-type", "bad-enum", "missing-required", "float-for-integer"],
)
def test_spark_crd_rejects_invalid_applications(spark_crd: str, admin: client.ApiClient, changes: dict,
                                                field: str) -> None:
    namespace = create_namespace(admin, "spark-bad")
    with pytest.raises(ApiException) as caught:
        create_spark_app(admin, namespace, spark_app("invalid", **changes))
    assert caught.value.status == 422, caught.value.body
    assert f"{field}:" in message(caught.value)
    assert client.CustomObjectsApi(admin).list_namespaced_custom_object(
        SPARK_GROUP, SPARK_VERSION, namespace, SPARK_PLURAL)["items"] == []


def test_spark_crd_unknown_field_is_rejected_under_strict_validation(spark_crd: str,
                                                                     admin: client.ApiClient) -> None:
    namespace = create_namespace(admin, "spark-unknown")
    body = spark_app("typo", executor__instance=2)  # `instance` instead of `instances`
    # kubectl's default (--validate=strict) and what our tooling must send: the typo is an error
    with pytest.raises(ApiException) as caught:
        create_spark_app(admin, namespace, body, field_validation="Strict")
    assert caught.value.status == 400, caught.value.body
    assert 'unknown field "spec.executor.instance"' in message(caught.value)
    # without it the structural schema silently prunes the field: the reason to insist on Strict
    pruned = create_spark_app(admin, namespace, body, field_validation="Ignore")
    assert "instance" not in pruned["spec"]["executor"]


# --- RBAC with a ServiceAccount token -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def configmap_reader(kube_apiserver: KubeAPIServer, admin: client.ApiClient):
    """ServiceAccount `reader` in a fresh namespace, bound to a Role allowing only get/list on configmaps."""
    core, rbac = client.CoreV1Api(admin), client.RbacAuthorizationV1Api(admin)
    namespace = create_namespace(admin, "rbac")
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="reader")))
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="configmap-reader"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])],
    ))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="reader-reads-configmaps"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="configmap-reader"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
    ))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="visible"), data={"k": "v"}))
    access = kube_apiserver.service_account_kubeconfig(namespace, "reader", expiration_seconds=600)
    return access, kube_apiserver.api_client(access.kubeconfig)


def test_service_account_token_is_a_bound_token_for_that_account(configmap_reader) -> None:
    access, reader = configmap_reader
    assert access.token.count(".") == 2  # a JWT from the TokenRequest API
    review = client.AuthenticationV1Api(reader).create_self_subject_review(client.V1SelfSubjectReview())
    assert review.status.user_info.username == f"system:serviceaccount:{access.namespace}:reader"
    assert "system:serviceaccounts" in review.status.user_info.groups
    assert "system:masters" not in review.status.user_info.groups


def test_rbac_lets_the_service_account_read_configmaps(configmap_reader) -> None:
    access, reader = configmap_reader
    core = client.CoreV1Api(reader)
    names = eventually(  # the RBAC authorizer reads Roles from an informer cache: allow it to catch up
        lambda: [cm.metadata.name for cm in core.list_namespaced_config_map(access.namespace).items],
        what="reader can list configmaps")
    assert "visible" in names
    assert core.read_namespaced_config_map("visible", access.namespace).data == {"k": "v"}


def test_rbac_forbids_everything_else(configmap_reader, admin: client.ApiClient) -> None:
    access, reader = configmap_reader
    core = client.CoreV1Api(reader)
    eventually(lambda: core.list_namespaced_config_map(access.namespace), what="reader can list configmaps")

    def forbidden(call: Callable[[], object]) -> str:
        with pytest.raises(ApiException) as caught:
            call()
        assert caught.value.status == 403, caught.value.body
        return message(caught.value)

    text = forbidden(lambda: core.create_namespaced_config_map(access.namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="written-by-reader"), data={"k": "v"})))
    assert f'User "system:serviceaccount:{access.namespace}:reader" cannot create resource "configmaps"' in text
    forbidden(lambda: core.delete_namespaced_config_map("visible", access.namespace))
    forbidden(lambda: core.list_namespaced_secret(access.namespace))
    forbidden(lambda: core.list_namespaced_config_map("default"))  # a Role is namespaced
    # and nothing was written behind the 403s
    names = [cm.metadata.name
             for cm in client.CoreV1Api(admin).list_namespaced_config_map(access.namespace).items]
    assert "written-by-reader" not in names
    assert "visible" in names


def test_kubectl_works_with_the_generated_kubeconfigs(kube_apiserver: KubeAPIServer,
                                                     configmap_reader) -> None:
    if shutil.which(os.environ.get("KUBECTL", "kubectl")) is None:
        if os.environ.get("CI"):
            pytest.fail("CI: kubectl not found on PATH", pytrace=False)
        pytest.skip("kubectl not found on PATH")
    access, _ = configmap_reader
    eventually(lambda: kube_apiserver.kubectl("get", "configmaps", kubeconfig=access.kubeconfig, check=False)
               .returncode == 0, what="kubectl as reader can list configmaps")
    listed = kube_apiserver.kubectl("get", "configmaps", "-o", "name", kubeconfig=access.kubeconfig)
    assert "configmap/visible" in listed.stdout.split()
    can_create = kube_apiserver.kubectl("auth", "can-i", "create", "configmaps", kubeconfig=access.kubeconfig,
                                        check=False)
    assert (can_create.returncode, can_create.stdout.strip()) == (1, "no"), can_create
    as_admin = kube_apiserver.kubectl("auth", "can-i", "create", "configmaps", "-n", access.namespace,
                                      check=False)
    assert (as_admin.returncode, as_admin.stdout.strip()) == (0, "yes"), as_admin
