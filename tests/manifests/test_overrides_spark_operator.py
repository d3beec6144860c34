"""charts/values/spark-operator.yaml: every key path exists in the Spark Operator chart's (2.5.2) default
values, and the settings the pipeline depends on are there."""

from __future__ import annotations

from tests.manifests.chart import (
    NAMESPACE,
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
    # spark-submit runs a JVM per submission in the controller: leave it room.
    assert memory_mib(OVERRIDE["controller"]["resources"]["limits"]["memory"]) >= 512


def test_driver_service_account_matches_the_chart():
    """The chart's SparkApplications use <release>-spark, which this release creates in our namespace."""
    chart_values = load_yaml(THIRD_PARTY_VALUES.parent / "marketing-engine" / "values.yaml")
    assert chart_values["pipeline"]["serviceAccount"] == "spark-operator-spark"
    assert DEFAULTS["spark"]["serviceAccount"]["create"] is True and not OVERRIDE.get("spark", {}).get(
        "serviceAccount", {}).get("name")
