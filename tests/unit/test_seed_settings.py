from __future__ import annotations

import dataclasses

import pytest

from common.settings import ConfigError, env_names
from seed.settings import PublisherSettings, SeedSettings

PUBLISHER_VARS = ["PUBLISH_TRANSPORT", "REST_PROXY_URL", "SCHEMA_REGISTRY_URL", "KAFKA_BOOTSTRAP_SERVERS",
                  "PUBLISH_TIMEOUT_S", "PUBLISH_MAX_RETRIES", "PUBLISH_BATCH_SIZE"]


def test_publisher_defaults_are_the_in_cluster_endpoints():
    got = PublisherSettings.from_env({})
    assert got.transport == "rest"
    assert got.rest_proxy_url == "http://redpanda.redpanda.svc.cluster.local:8082"
    assert got.schema_registry_url == "http://redpanda.redpanda.svc.cluster.local:8081"
    assert got.bootstrap_servers == "redpanda.redpanda.svc.cluster.local:9093"
    assert (got.request_timeout_s, got.max_retries) == (10.0, 5)


def test_publisher_reads_its_variables():
    got = PublisherSettings.from_env({
        "PUBLISH_TRANSPORT": "kafka", "REST_PROXY_URL": "http://proxy:8082/", "SCHEMA_REGISTRY_URL": "mock://t",
        "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2", "PUBLISH_TIMEOUT_S": "2.5", "PUBLISH_MAX_RETRIES": "0",
        "PUBLISH_BATCH_SIZE": "7",
    })
    assert got == PublisherSettings("kafka", "http://proxy:8082", "mock://t", "a:1,b:2", 2.5, 0, 7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.transport = "rest"  # type: ignore[misc]


def test_env_names_of_seed_settings_include_the_publisher_variables():
    names = env_names(SeedSettings)
    assert set(env_names(PublisherSettings)) <= set(names)
    assert env_names(PublisherSettings) == PUBLISHER_VARS
    assert {"SEED_CUSTOMERS", "SEED_DAYS", "SEED_RATE", "SEED_RANDOM_SEED", "SEED_LATE_SHARE",
            "SEED_DUPLICATE_SHARE", "SEED_GROUND_TRUTH", "SEED_LABEL_WINDOW_DAYS", "LOG_LEVEL"} <= set(names)
    assert len(names) == len(set(names))


def test_seed_settings_publisher_view_equals_publisher_settings_from_the_same_environment():
    environ = {"PUBLISH_TRANSPORT": "kafka", "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "PUBLISH_MAX_RETRIES": "2",
               "SEED_CUSTOMERS": "12", "SEED_START_DATE": "2026-03-01"}
    seed = SeedSettings.from_env(environ)
    assert seed.publisher == PublisherSettings.from_env(environ)
    assert seed.customers == 12
    assert seed.start_ms == 1_772_323_200_000  # 2026-03-01T00:00:00Z


@pytest.mark.parametrize("name,value", [
    ("PUBLISH_TRANSPORT", "grpc"), ("REST_PROXY_URL", "redpanda:8082"), ("PUBLISH_TIMEOUT_S", "0"),
    ("PUBLISH_MAX_RETRIES", "-1"), ("SEED_CUSTOMERS", "0"), ("SEED_LATE_SHARE", "1.2"),
    ("SEED_START_DATE", "yesterday"), ("SEED_RATE", "-3"), ("LOG_LEVEL", "LOUD"),
])
def test_invalid_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        SeedSettings.from_env({name: value})
