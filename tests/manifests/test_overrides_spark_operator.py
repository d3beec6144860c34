"""charts/values/spark-operator.yaml: every key path exists in the Spark Operator chart's (2.5.2) default
values, and the settings the pipeline depends on are there."""

from __future__ import annotations

import re

from tests.manifests.chart import (
    NAMESPACE,
    REPO,
    SCHEMAS,
    THIRD_PARTY_VALUES,
    load_yaml,
    memory_mib,
    unknown_key_paths,
)

DEFAULTS_FILE = SCHEMAS / "spark-operator" / "values.yaml"
DEFAULTS = load_yaml(DEFAULTS_FILE)
OVERRIDE = load_yaml(THIRD_PARTY_VALUES / "spark-operator.yaml")


def test_every_key_exists_in_the_chart_defaults():
    assert unknown_key_paths(OVERRIDE, DEFAULTS, {}, DEFAULTS_FILE.read_text()) == []


def test_the_check_catches_a_typo():
    assert unknown_key_paths({"webhook": {"enabel": True}}, DEFAULTS, {}, "") == ["webhook.enabel"]
    assert unknown_key_paths({"spark": {"jobNamespace": ["x"]}}, DEFAULTS, {}, "") == ["spark.jobNamespace"]


def test_watches_our_namespace():
    assert NAMESPACE in OVERRIDE["spark"]["jobNamespaces"]


def test_webhook_enabled_for_volumes_and_security_contexts():
    assert OVERRIDE["webhook"]["enable"] is True


def test_controller_and_webhook_are_sized():
    for part in ("controller", "webhook"):
        resources = OVERRIDE[part]["resources"]
        assert memory_mib(resources["requests"]["memory"]) <= memory_mib(resources["limits"]["memory"])
        assert resources["requests"]["cpu"] and resources["limits"]["cpu"]


# What one spark-submit JVM needs beyond heap and metaspace (code cache, threads, GC, native), and the
# controller's own Go process.
JVM_NATIVE_MIB = 96
CONTROLLER_MIB = 128
APPLICATIONS = 4  # bronze, silver, gold, score: applied together by make pipeline


def submit_jvm_mib(controller: dict) -> float:
    """One spark-submit JVM's ceiling from SPARK_SUBMIT_OPTS; without -Xmx the JVM takes 25% of the
    container limit (cluster mode sets none), without MaxMetaspaceSize metaspace is unbounded."""
    opts = next((e["value"] for e in controller.get("env", []) if e["name"] == "SPARK_SUBMIT_OPTS"), "")
    limit = memory_mib(controller["resources"]["limits"]["memory"])
    heap = re.search(r"-Xmx(\d+[kmg])", opts, re.IGNORECASE)
    metaspace = re.search(r"-XX:MaxMetaspaceSize=(\d+[kmg])", opts, re.IGNORECASE)
    if metaspace is None:
        return float("inf")
    heap_mib = memory_mib(heap.group(1).upper() + "i") if heap else limit / 4
    return heap_mib + memory_mib(metaspace.group(1).upper() + "i") + JVM_NATIVE_MIB


def test_concurrent_submissions_fit_the_controller_limit():
    controller = OVERRIDE["controller"]
    assert controller["workers"] >= APPLICATIONS  # submitted at once, not in turn
    limit = memory_mib(controller["resources"]["limits"]["memory"])
    concurrent = min(controller["workers"], APPLICATIONS)
    assert concurrent * submit_jvm_mib(controller) + CONTROLLER_MIB <= limit, (submit_jvm_mib(controller), limit)


def test_the_submission_model_catches_an_unbounded_jvm():
    controller = {"workers": 4, "env": [], "resources": {"limits": {"memory": "1Gi"}}}
    assert submit_jvm_mib(controller) == float("inf")
    controller["env"] = [{"name": "SPARK_SUBMIT_OPTS", "value": "-XX:MaxMetaspaceSize=128m"}]
    assert 4 * submit_jvm_mib(controller) + CONTROLLER_MIB > 1024  # 4 x (256 + 128 + 96) + 128


def test_driver_service_account_matches_the_chart():
    """The chart's SparkApplications use <release>-spark, which this release creates in our namespace."""
    chart_values = load_yaml(THIRD_PARTY_VALUES.parent / "marketing-engine" / "values.yaml")
    assert chart_values["pipeline"]["serviceAccount"] == "spark-operator-spark"
    assert DEFAULTS["spark"]["serviceAccount"]["create"] is True and not OVERRIDE.get("spark", {}).get(
        "serviceAccount", {}).get("name")


def test_troubleshooting_matches_the_webhook_failure_policy():
    """With failurePolicy Fail a pod the webhook cannot mutate is rejected, not created without the mount."""
    policy = OVERRIDE["webhook"].get("failurePolicy", DEFAULTS["webhook"]["failurePolicy"])
    doc = (REPO / "docs" / "kubernetes.md").read_text()
    assert policy == "Fail"
    assert f"failurePolicy: {policy}" in doc and "rejected" in doc
    assert "lacks the `/data/delta` mount" not in doc
