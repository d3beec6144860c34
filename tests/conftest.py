"""Session-scoped engine fixtures: each starts a real engine on free ports in a temp dir, shows its
log when a test fails, and is always torn down. Tiers are marked by folder (see pytest_collection_modifyitems)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import SPARK_JARS

TIER_BY_FOLDER = {"unit": "unit", "engines": "engines", "manifests": "manifests", "images": "images",
                  "cluster": "cluster"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(Path(__file__).parent).parts
        tier = TIER_BY_FOLDER.get(parts[0]) if parts else None
        if tier:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from tests.support.kafka_broker import start_broker

    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from tests.support.redis_server import start_redis

    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A local Spark session with Delta, Kafka and Avro jars (from `make jars`)."""
    from spark.session import build_session

    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session = build_session(
        "tests",
        master="local[2]",
        jars_dir=SPARK_JARS,
        shuffle_partitions=2,
        extra_conf={
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.memory": "2g",
            "spark.ui.enabled": "false",
            "spark.sql.streaming.stopTimeout": "30s",
            "spark.default.parallelism": "2",
        },
    )
    session.sparkContext.setLogLevel("WARN")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def delta_root(tmp_path: Path) -> Path:
    root = tmp_path / "delta"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def schema_registry() -> Iterator:
    """TEST DOUBLE of the Schema Registry over HTTP, for code that must reach one across a process boundary."""
    from tests.support.schema_registry_double import SchemaRegistryDouble

    double = SchemaRegistryDouble().start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def mock_registry_url(request: pytest.FixtureRequest) -> str:
    """confluent-kafka's in-memory registry, one per test."""
    import re

    return "mock://" + re.sub(r"[^a-zA-Z0-9-]+", "-", request.node.name)


def pytest_report_header(config: pytest.Config) -> str:
    return f"CI={os.environ.get('CI', '')} spark jars: {SPARK_JARS}"
