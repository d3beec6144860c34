"""Kafka transport against the real broker fixture; every record consumed and decoded by an independent
confluent-kafka consumer with AvroDeserializer (its own registry client)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import serde, topics
from seed.publish import KafkaPublisher, PublishError
from seed.settings import PublisherSettings
from seed.simulator import SimConfig, Simulator
from tests.support.http_proxy_double import HttpProxyDouble
from tests.support.paths import REPO
from tests.support.procs import free_port

PARTITIONS = 3


@pytest.fixture(scope="module")
def broker(kafka_broker):
    kafka_broker.create_topics([t.name for t in topics.SOURCE_TOPICS], partitions=PARTITIONS)
    return kafka_broker


def _high_watermarks(bootstrap: str, wait: float = 30) -> dict[tuple[str, int], int]:
    """End offsets of every source-topic partition (retried while fresh partitions elect leaders)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-test-watermarks"})
    deadline = time.monotonic() + wait
    try:
        marks = {}
        for t in topics.SOURCE_TOPICS:
            parts = consumer.list_topics(t.name, timeout=10).topics[t.name].partitions
            for p in parts:
                while True:
                    try:
                        marks[(t.name, p)] = consumer.get_watermark_offsets(TopicPartition(t.name, p), timeout=10)[1]
                        break
                    except KafkaException:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
        return marks
    finally:
        consumer.close()


def _consume_from(bootstrap: str, registry_url: str, start: dict[tuple[str, int], int], expected: int,
                  timeout: float = 30) -> dict[str, list[tuple[str, int, dict]]]:
    """Every record after ``start``, decoded: topic -> [(key, partition, value)] in partition order."""
    decode = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"seed-test-{time.monotonic_ns()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    consumer.assign([TopicPartition(t, p, off) for (t, p), off in start.items()])
    got: dict[str, list[tuple[str, int, dict]]] = {}
    count = 0
    deadline = time.monotonic() + timeout
    try:
        while count < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                assert msg.error() is None, msg.error()
                value = decode(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
                got.setdefault(msg.topic(), []).append((msg.key().decode(), msg.partition(), value))
                count += 1
        # Anything more would be a duplicate the idempotent producer should have prevented.
        for msg in consumer.consume(1000, 1.0):
            got.setdefault(msg.topic(), []).append((msg.key().decode(), msg.partition(), {}))
    finally:
        consumer.close()
    return got


def _normalise(record: dict) -> dict:
    out = dict(record)
    for field in ("created_at", "updated_at", "placed_at", "delivered_at"):
        if field in out:
            out[field] = serde.to_millis(out[field])
    return out


def test_every_acknowledged_record_is_consumed_and_decodes_to_what_was_sent(broker, schema_registry):
    evs = list(Simulator(SimConfig(customers=80, days=20, seed=31)).events())
    start = _high_watermarks(broker.bootstrap)
    publisher = KafkaPublisher(PublisherSettings(transport="kafka", bootstrap_servers=broker.bootstrap,
                                                 schema_registry_url=schema_registry.url, request_timeout_s=5))
    try:
        acked = {t.name: publisher.publish(t, [(e.key, e.record) for e in evs if e.topic is t])
                 for t in topics.SOURCE_TOPICS}
    finally:
        publisher.close()
    assert sum(acked.values()) == len(evs) == publisher.stats.acknowledged
    got = _consume_from(broker.bootstrap, schema_registry.url, start, len(evs))
    for t in topics.SOURCE_TOPICS:
        sent = [(e.key, e.record) for e in evs if e.topic is t]
        received = got.get(t.name, [])
        assert len(received) == len(sent) == acked[t.name]
        # Per key (one partition each), the records arrive in the order they were sent.
        by_key_sent: dict[str, list] = {}
        for key, record in sent:
            by_key_sent.setdefault(key, []).append(record)
        by_key_got: dict[str, list] = {}
        partition_of: dict[str, set] = {}
        for key, partition, value in received:
            by_key_got.setdefault(key, []).append(_normalise(value))
            partition_of.setdefault(key, set()).add(partition)
        assert by_key_got == by_key_sent
        assert all(len(p) == 1 for p in partition_of.values())


def test_unknown_topic_is_a_clear_error(broker, schema_registry):
    missing = topics.Topic("seed.test.missing", "avro", "string", ("seed",), "customer_profile_upsert.avsc")
    publisher = KafkaPublisher(PublisherSettings(bootstrap_servers=broker.bootstrap,
                                                 schema_registry_url=schema_registry.url, max_retries=1))
    try:
        with pytest.raises(PublishError, match="topic seed.test.missing does not exist") as err:
            publisher.publish(missing, [("k", {})])
    finally:
        publisher.close()
    assert broker.bootstrap in str(err.value)


def test_unreachable_broker_fails_fast_after_retries(schema_registry):
    dead = f"127.0.0.1:{free_port()}"
    publisher = KafkaPublisher(PublisherSettings(bootstrap_servers=dead, schema_registry_url=schema_registry.url,
                                                 request_timeout_s=1, max_retries=1))
    started = time.monotonic()
    try:
        with pytest.raises(PublishError, match="brokers unreachable") as err:
            publisher.publish(topics.CUSTOMER_PROFILE, [("k", {})])
    finally:
        publisher.close()
    assert time.monotonic() - started < 10
    assert dead in str(err.value) and publisher.stats.acknowledged == 0


def test_proxy_double_forwards_to_the_real_broker(broker, schema_registry):
    """The HTTP-proxy double in forwarding mode: REST transport end to end into Kafka."""
    from seed.publish import RestPublisher

    evs = [e for e in Simulator(SimConfig(customers=10, days=5, seed=41)).events()
           if e.topic is topics.ORDER_PLACED or e.topic is topics.CUSTOMER_PROFILE]
    start = _high_watermarks(broker.bootstrap)
    with HttpProxyDouble(schema_registry, forward_bootstrap=broker.bootstrap) as proxy:
        publisher = RestPublisher(PublisherSettings(rest_proxy_url=proxy.url,
                                                    schema_registry_url=schema_registry.url))
        for t in (topics.CUSTOMER_PROFILE, topics.ORDER_PLACED):
            records = [(e.key, e.record) for e in evs if e.topic is t]
            assert publisher.publish(t, records) == len(records)
        publisher.close()
        offsets = {(r.topic, r.partition, r.offset) for t in topics.SOURCE_TOPICS for r in proxy.records(t.name)}
    got = _consume_from(broker.bootstrap, schema_registry.url, start, len(evs))
    assert sum(len(v) for v in got.values()) == len(evs) == len(offsets)
    assert proxy.decode_errors == []


def test_cli_kafka_transport(broker, schema_registry):
    start = _high_watermarks(broker.bootstrap)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SEED_", "PUBLISH_"))}
    environ.update(PYTHONPATH=str(REPO), KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
                   SCHEMA_REGISTRY_URL=schema_registry.url)
    done = subprocess.run([sys.executable, "-m", "seed", "--transport", "kafka", "--customers", "25", "--days", "10",
                           "--seed", "9"], cwd=REPO, env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = len(list(Simulator(SimConfig(customers=25, days=10, seed=9)).events()))
    assert f"sent {expected} events" in done.stderr
    got = _consume_from(broker.bootstrap, schema_registry.url, start, expected)
    assert sum(len(v) for v in got.values()) == expected
