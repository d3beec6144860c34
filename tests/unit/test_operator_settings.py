"""OperatorSettings: environment -> frozen settings, failing fast with the variable's name."""

from __future__ import annotations

import dataclasses

import pytest

from common import settings as s
from operators.ksql.settings import OperatorSettings


def test_defaults_are_the_in_cluster_ones():
    got = OperatorSettings.from_env({})
    assert got.ksqldb_url == "http://marketing-engine-ksqldb:8088"
    assert got.schema_registry_url == "http://redpanda.redpanda.svc.cluster.local:8081"
    assert got.configmap_label == "marketing-engine.io/ksql=true"
    assert (got.label_key, got.label_value) == ("marketing-engine.io/ksql", "true")
    assert got.watch_namespace == "" and got.drift_interval == 60.0 and got.require_source_subjects
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.ksqldb_url = "x"  # type: ignore[misc]


def test_env_names_are_what_the_chart_must_set():
    assert s.env_names(OperatorSettings) == [
        "KSQLDB_URL", "WATCH_NAMESPACE", "KSQL_CONFIGMAP_LABEL", "KSQL_DRIFT_INTERVAL_SECONDS",
        "KSQL_REQUEST_TIMEOUT_SECONDS", "KSQL_COMMAND_TIMEOUT_SECONDS", "KSQL_STARTUP_TIMEOUT_SECONDS",
        "KSQL_BACKOFF_SECONDS",
        "KSQL_BACKOFF_MAX_SECONDS", "SCHEMA_REGISTRY_URL", "KSQL_REQUIRE_SOURCE_SUBJECTS", "LOG_LEVEL", "LOG_JSON",
    ]


def test_values_are_parsed():
    got = OperatorSettings.from_env({
        "KSQLDB_URL": "http://127.0.0.1:8088/", "WATCH_NAMESPACE": "marketing-engine",
        "KSQL_CONFIGMAP_LABEL": "example.com/ksql", "KSQL_DRIFT_INTERVAL_SECONDS": "2.5",
        "SCHEMA_REGISTRY_URL": "", "LOG_JSON": "true",
    })
    assert got.ksqldb_url == "http://127.0.0.1:8088"
    assert (got.label_key, got.label_value, got.drift_interval) == ("example.com/ksql", None, 2.5)
    assert got.schema_registry_url == "" and got.log_json


@pytest.mark.parametrize("name,value", [
    ("KSQLDB_URL", "marketing-engine-ksqldb:8088"), ("KSQL_CONFIGMAP_LABEL", "bad key=true"),
    ("KSQL_CONFIGMAP_LABEL", "a=b c"), ("KSQL_DRIFT_INTERVAL_SECONDS", "0"), ("KSQL_DRIFT_INTERVAL_SECONDS", "nan"),
    ("KSQL_BACKOFF_SECONDS", "-1"), ("WATCH_NAMESPACE", "Not_A_Namespace"), ("SCHEMA_REGISTRY_URL", "redpanda:8081"),
    ("LOG_LEVEL", "LOUD"), ("KSQL_REQUIRE_SOURCE_SUBJECTS", "maybe"),
])
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(s.ConfigError) as err:
        OperatorSettings.from_env({name: value})
    assert name in str(err.value) and "expected" in str(err.value)


@pytest.mark.parametrize("labels,namespace,watch,selector,expected", [
    ({"marketing-engine.io/ksql": "true"}, "ns", "", "marketing-engine.io/ksql=true", True),
    ({"marketing-engine.io/ksql": "false"}, "ns", "", "marketing-engine.io/ksql=true", False),
    ({}, "ns", "", "marketing-engine.io/ksql=true", False),
    ({"marketing-engine.io/ksql": "anything"}, "ns", "", "marketing-engine.io/ksql", True),
    ({"marketing-engine.io/ksql": "true"}, "other", "ns", "marketing-engine.io/ksql=true", False),
    ({"marketing-engine.io/ksql": "true"}, "ns", "ns", "marketing-engine.io/ksql=true", True),
])
def test_selects(labels, namespace, watch, selector, expected):
    got = OperatorSettings.from_env({"WATCH_NAMESPACE": watch, "KSQL_CONFIGMAP_LABEL": selector})
    assert got.selects(labels, namespace) is expected


def test_backoff_grows_is_capped_and_respects_retry_after():
    got = OperatorSettings.from_env({"KSQL_BACKOFF_SECONDS": "2", "KSQL_BACKOFF_MAX_SECONDS": "30"})
    assert [got.backoff_delay(n) for n in range(6)] == [2, 4, 8, 16, 30, 30]
    assert got.backoff_delay(0, retry_after=10) == 10
    assert got.backoff_delay(10_000) == 30
