"""kind-config.yaml and the kind make targets, checked against the charts they serve (kind itself cannot
run here: no Docker engine)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.manifests.chart import (
    KUBE_VERSION,
    REPO,
    SCHEMAS,
    THIRD_PARTY_VALUES,
    by_kind,
    default_values,
    load_yaml,
    render,
)

KIND = yaml.safe_load((REPO / "kind-config.yaml").read_text())
(NODE,) = KIND["nodes"]
MAPPINGS = NODE["extraPortMappings"]
MK = (REPO / "mk" / "kind.mk").read_text()
SCRIPTS = sorted((REPO / "scripts").glob("kind*.sh")) + sorted((REPO / "scripts").glob("helm*.sh"))


def mk_var(name: str) -> str:
    match = re.search(rf"^{name}\s*[:?]?=\s*(\S+)", MK, re.MULTILINE)
    assert match, f"{name} not set in mk/kind.mk"
    return match.group(1)


def test_cluster_shape():
    assert KIND["kind"] == "Cluster" and KIND["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert KIND["name"] == mk_var("KIND_CLUSTER") == "marketing-engine"
    assert NODE["role"] == "control-plane"  # one node: RWO Delta volume and Redpanda's single broker


def test_node_image_pinned_by_digest_at_the_validated_version():
    image = NODE["image"]
    match = re.fullmatch(r"kindest/node:v(\d+\.\d+\.\d+)@sha256:[0-9a-f]{64}", image)
    assert match, f"{image}: tag and sha256 digest expected"
    assert match.group(1) == KUBE_VERSION  # the version the manifests are validated against


def test_port_mappings_equal_node_ports():
    """containerPort == the Service's nodePort, for every NodePort the host reaches."""
    by_container = {m["containerPort"]: m for m in MAPPINGS}
    assert len(by_container) == len(MAPPINGS)
    assert len({m["hostPort"] for m in MAPPINGS}) == len(MAPPINGS)
    for m in MAPPINGS:
        assert 30000 <= m["containerPort"] <= 32767, m
        assert m.get("listenAddress") == "127.0.0.1", m
    # web UI: the chart's NodePort Service, on the host port of the same number (WEB_HOST_PORT)
    (web,) = [s for s in by_kind(render(()), "Service") if s["metadata"]["name"].endswith("-web")]
    assert web["spec"]["type"] == "NodePort"
    node_port = web["spec"]["ports"][0]["nodePort"]
    assert by_container[node_port]["hostPort"] == node_port == int(mk_var("WEB_HOST_PORT"))
    # Kafka UI
    kafka_ui = load_yaml(THIRD_PARTY_VALUES / "kafka-ui.yaml")
    assert by_container[kafka_ui["service"]["nodePort"]]["hostPort"] == 8080
    # Redpanda's external listeners (chart defaults, not overridden): host port == node port
    redpanda = load_yaml(SCHEMAS / "redpanda" / "values.yaml")["listeners"]
    for listener in ("kafka", "schemaRegistry", "http"):
        (port,) = redpanda[listener]["external"]["default"]["advertisedPorts"]
        assert by_container[port]["hostPort"] == port, listener
    assert sorted(by_container) == sorted([node_port, kafka_ui["service"]["nodePort"], 31092, 30081, 30082])


# Host ports a laptop commonly has taken: macOS 12+ runs AirPlay Receiver on *:5000 (and :7000).
MACOS_RESERVED = {5000, 7000}


def test_no_host_port_collides_with_macos_airplay():
    assert not {m["hostPort"] for m in MAPPINGS} & MACOS_RESERVED


@pytest.mark.parametrize("path", ["README.md", "docs/kubernetes.md", "mk/kind.mk", "scripts/kind-up.sh",
                                  "charts/marketing-engine/templates/NOTES.txt", "DEMO.md"])
def test_the_web_ui_is_named_on_its_host_port(path):
    """Every place that tells the user where the web UI is says the mapped host port, not 5000."""
    text = (REPO / path).read_text()
    assert "localhost:5000" not in text, path
    assert not re.search(r"port-forward \S+ 5000:", text), path


def test_delta_mount_backs_the_chart_volume():
    (mount,) = NODE["extraMounts"]
    values = default_values()
    assert mount["containerPath"] == values["delta"]["hostPath"]["path"]
    assert values["delta"]["hostPath"]["enabled"] is True
    (pv,) = by_kind(render(()), "PersistentVolume")
    assert pv["spec"]["hostPath"]["path"] == mount["containerPath"]
    # relative to the repository root (kind resolves it against the working directory of make kind-up)
    assert mount["hostPath"] == "data/delta"
    assert "data/" in (REPO / ".gitignore").read_text().split()
    assert "chmod 0777 data/delta" in (REPO / "scripts" / "kind-up.sh").read_text()


def test_chart_versions_in_make_equal_the_validated_ones():
    assert mk_var("REDPANDA_CHART_VERSION") == load_yaml(SCHEMAS / "redpanda" / "Chart.yaml")["version"]
    assert mk_var("KAFKA_UI_CHART_VERSION") == load_yaml(SCHEMAS / "kafka-ui" / "Chart.yaml")["version"]
    crd = (SCHEMAS / "spark-operator" / "sparkoperator.k8s.io_sparkapplications.yaml").read_text()
    assert mk_var("SPARK_OPERATOR_CHART_VERSION") == "2.5.2" and "v1beta2" in crd


def test_image_tags_in_make_are_the_chart_tag_plus_a_content_digest():
    images = default_values()["images"]
    for key in ("app", "spark"):
        tag = subprocess.run(["scripts/image-tag.sh", key], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=60).stdout.strip()
        assert re.fullmatch(rf"{re.escape(images[key]['tag'])}-[0-9a-f]{{12}}", tag), tag


def test_helm_tool_and_chart_sync_are_prerequisites_of_the_chart_tiers():
    for tier in ("TEST_MANIFESTS_DEPS", "TEST_CLUSTER_DEPS"):
        assert re.search(rf"^{tier} \+= \$\(HELM_TOOL\) chart-sync$", MK, re.MULTILINE), tier
    assert mk_var("HELM_TOOL") == "$(CACHE)/bin/helm"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", mk_var("HELM_VERSION"))


@pytest.mark.parametrize(
    "target",
    ["kind-up", "kind-down", "kind-clean-delta", "kind-seed", "images", "pipeline", "ui", "spark-sql", "ksql", "status", "logs",
     "helm-tool", "chart-sync", "chart-render"],
)
def test_targets_are_documented_and_resolve(target):
    assert re.search(rf"^{re.escape(target)}:.*## \S", MK, re.MULTILINE), f"{target}: no ## help"
    proc = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_kind_up_checks_tools_and_explains_how_to_install_them():
    lib = (REPO / "scripts" / "kind-lib.sh").read_text()
    for tool in ("docker", "kind", "kubectl", "helm"):
        assert re.search(rf"^\s*{tool}\) echo \".*https?://", lib, re.MULTILINE), f"no install hint for {tool}"
    up = (REPO / "scripts" / "kind-up.sh").read_text()
    assert "check_tools" in up
    # every third-party chart from its official repository at the pinned version, with our override file
    for repo, url in (("redpanda", "https://charts.redpanda.com"),
                      ("spark-operator", "https://kubeflow.github.io/spark-operator"),
                      ("kafbat-ui", "https://kafbat.github.io/helm-charts")):
        assert f"repo add {repo} {url}" in up
    for values in ("redpanda", "spark-operator", "kafka-ui"):
        assert re.search(rf"helm_install {values} .*\\?\s*charts/values/{values}\.yaml", up), values
    # idempotent installs: 3 third-party (helm_install, with an explicit timeout) + ours
    assert up.count("helm_install ") == 3 and up.count("upgrade --install") == 1
    assert re.search(r'upgrade --install .*\n.*--timeout "\$HELM_TIMEOUT"', lib)


def test_kind_up_waits_with_one_line_per_component():
    up = (REPO / "scripts" / "kind-up.sh").read_text()
    waited = re.findall(r'wait_for "([^"]+)"', up)
    assert {"redpanda", "spark-operator controller", "spark-operator webhook", "kafka-ui", "topics", "redis",
            "ksqldb", "ksql-operator", "web", "seed"} <= set(waited)
    assert 'wait_for "spark $app"' in up


def test_resource_figures_in_make_are_the_budget():
    from tests.manifests.test_budget_memory import budget, docker_cpus, docker_memory_gib

    b = budget()
    assert int(mk_var("MEMORY_REQUEST_MIB")) == round(b.total_mib)
    assert int(mk_var("CPU_REQUEST_M")) == round(b.cpu_m)
    assert int(mk_var("DOCKER_MEMORY_GIB")) == docker_memory_gib(b.total_mib)
    assert docker_cpus(b.cpu_m) == 3


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (apt-get install shellcheck)")
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_scripts_pass_shellcheck(script):
    proc = subprocess.run(["shellcheck", "-x", "-P", str(REPO), str(script)], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
