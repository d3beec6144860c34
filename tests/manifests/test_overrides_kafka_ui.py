"""charts/values/kafka-ui.yaml: every key path exists in the kafbat kafka-ui chart's (1.5.2) default
values (or below a map the chart leaves free-form), and the cluster it shows is ours."""

from __future__ import annotations

import re

import yaml

from tests.manifests.chart import (
    NAMESPACE,
    REPO,
    SCHEMAS,
    THIRD_PARTY_VALUES,
    by_kind,
    default_values,
    load_yaml,
    render,
    unknown_key_paths,
)

DEFAULTS_FILE = SCHEMAS / "kafka-ui" / "values.yaml"
DEFAULTS = load_yaml(DEFAULTS_FILE)
OVERRIDE = load_yaml(THIRD_PARTY_VALUES / "kafka-ui.yaml")
# Keys the chart documents only in a comment (value: a regex the default values text must match).
COMMENTED = {("service", "nodePort"): r"^\s*#\s*nodePort:"}


def test_chart_version_is_the_pinned_one():
    assert load_yaml(SCHEMAS / "kafka-ui" / "Chart.yaml")["version"] == "1.5.2"


def test_every_key_exists_in_the_chart_defaults():
    assert unknown_key_paths(OVERRIDE, DEFAULTS, COMMENTED, DEFAULTS_FILE.read_text()) == []


def test_the_check_catches_a_typo():
    text = DEFAULTS_FILE.read_text()
    assert unknown_key_paths({"servce": {"type": "NodePort"}}, DEFAULTS, COMMENTED, text) == ["servce.type"]
    assert unknown_key_paths({"service": {"nodeport": 1}}, DEFAULTS, COMMENTED, text) == ["service.nodeport"]
    # free-form below an empty default map is accepted
    assert unknown_key_paths({"resources": {"limits": {"memory": "1Gi"}}}, DEFAULTS, COMMENTED, text) == []


def test_cluster_is_ours_with_the_ksqldb_view():
    (cluster,) = OVERRIDE["yamlApplicationConfig"]["kafka"]["clusters"]
    values = default_values()
    assert cluster["bootstrapServers"] == values["kafka"]["bootstrapServers"]
    assert cluster["schemaRegistry"] == values["kafka"]["schemaRegistryUrl"]
    (svc,) = [s for s in by_kind(render(()), "Service") if s["metadata"]["name"].endswith("-ksqldb")]
    port = svc["spec"]["ports"][0]["port"]
    assert cluster["ksqldbServer"] == f"http://{svc['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{port}"


def test_node_port_is_mapped_by_kind():
    kind = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    mapped = {m["containerPort"]: m["hostPort"] for n in kind["nodes"] for m in n.get("extraPortMappings", [])}
    assert OVERRIDE["service"]["type"] == "NodePort"
    assert mapped[OVERRIDE["service"]["nodePort"]] == 8080


def test_kafka_ui_namespace_is_allowed_into_ksqldb():
    """The chart's ksqlDB NetworkPolicy lets in the namespace kind-up installs Kafka UI into."""
    assert default_values()["networkPolicy"]["kafkaUiNamespace"] == "kafka-ui"
    # helm_install <release> <chart> <version> <namespace> <values file> (scripts/kind-lib.sh)
    up = (REPO / "scripts" / "kind-up.sh").read_text()
    assert re.search(r"^helm_install kafka-ui \S+ \S+ kafka-ui charts/values/kafka-ui\.yaml$", up, re.MULTILINE)


def test_runs_as_a_numeric_non_root_user():
    psc = OVERRIDE["podSecurityContext"]
    assert psc["runAsNonRoot"] is True and isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0
    assert OVERRIDE["securityContext"]["allowPrivilegeEscalation"] is False
    assert OVERRIDE["securityContext"]["capabilities"]["drop"] == ["ALL"]
