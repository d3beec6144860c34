"""Kafka transport against the real broker fixture; every record consumed and decoded by an independent
confluent-kafka consumer with AvroDeserializer (its own registry client)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import serde, topics
from schemas.partitioning import partition_for_key
from seed.publish import KafkaPublisher, PublishError, RestPublisher
from seed.settings import PublisherSettings
from seed.simulator import SimConfig, Simulator
from tests.support.http_proxy_double import HttpProxyDouble
from tests.support.paths import KAFKA_JARS, REPO
from tests.support.procs import free_port

PARTITIONS = 3
# Topics of their own for the placement tests: more partitions than the source topics, so a wrong
# hash shows on most keys.
PLACEMENT_PARTITIONS = 6


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


# ---- placement: every keyed record in the partition Java's murmur2 gives (issue 13, defect 1) -------------


def _placement_topic(name: str, broker) -> topics.Topic:
    topic = topics.Topic(name, "avro", "string", ("seed",), "customer_profile_upsert.avsc",
                         partitions=PLACEMENT_PARTITIONS)
    broker.create_topics([name], partitions=PLACEMENT_PARTITIONS)
    return topic


def _profiles(n: int, seed: int) -> list[tuple[str, dict]]:
    evs = Simulator(SimConfig(customers=n, days=1, seed=seed, late_share=0)).events()
    return [(e.key, e.record) for e in evs if e.topic is topics.CUSTOMER_PROFILE][:n]


def _read_back(bootstrap: str, name: str, expected: int, timeout: float = 30) -> tuple[int, list[tuple[str, int]]]:
    """(the topic's partition count per broker metadata, [(key, partition)] of every record in it)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"placement-{time.monotonic_ns()}",
                         "enable.auto.commit": False})
    try:
        count = len(consumer.list_topics(name, timeout=10).topics[name].partitions)
        consumer.assign([TopicPartition(name, p, 0) for p in range(count)])
        got: list[tuple[str, int]] = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                assert msg.error() is None, msg.error()
                got.append((msg.key().decode(), msg.partition()))
        for msg in consumer.consume(1000, 1.0):  # nothing more expected
            got.append((msg.key().decode(), msg.partition()))
        return count, got
    finally:
        consumer.close()


def _assert_murmur2_placement(count: int, got: list[tuple[str, int]], keys: list[str]) -> None:
    assert count == PLACEMENT_PARTITIONS
    assert sorted(k for k, _ in got) == sorted(keys)
    wrong = [(k, p) for k, p in got if p != partition_for_key(k, count)]
    assert wrong == [], f"{len(wrong)} of {len(got)} records off their murmur2 partition: {wrong[:5]}"
    assert {p for _, p in got} == set(range(count))
    # The check discriminates: librdkafka's default (CRC32) would have put most of these keys elsewhere.
    assert sum(p != zlib.crc32(k.encode()) % count for k, p in got) > len(got) / 2


def test_kafka_transport_places_every_key_by_murmur2(kafka_broker, schema_registry):
    topic = _placement_topic("seed.test.placement.kafka", kafka_broker)
    records = _profiles(240, seed=51)
    publisher = KafkaPublisher(PublisherSettings(transport="kafka", bootstrap_servers=kafka_broker.bootstrap,
                                                 schema_registry_url=schema_registry.url, request_timeout_s=5))
    try:
        assert publisher.publish(topic, records) == len(records)
    finally:
        publisher.close()
    count, got = _read_back(kafka_broker.bootstrap, topic.name, len(records))
    _assert_murmur2_placement(count, got, [k for k, _ in records])


def test_rest_transport_through_the_proxy_double_places_every_key_by_murmur2(kafka_broker, schema_registry):
    topic = _placement_topic("seed.test.placement.rest", kafka_broker)
    records = _profiles(240, seed=52)
    # A proxy whose own default is CRC32: the publisher's explicit partitions must decide.
    with HttpProxyDouble(schema_registry, forward_bootstrap=kafka_broker.bootstrap,
                         forward_partitioner="consistent_random") as proxy:
        publisher = RestPublisher(PublisherSettings(rest_proxy_url=proxy.url, schema_registry_url=schema_registry.url,
                                                    batch_size=100))
        try:
            assert publisher.publish(topic, records) == len(records)
        finally:
            publisher.close()
        posts = [r for r in proxy.requests if r.method == "POST"]
    assert len(posts) == 3 and all(r.status == 200 for r in posts)
    count, got = _read_back(kafka_broker.bootstrap, topic.name, len(records))
    _assert_murmur2_placement(count, got, [k for k, _ in records])


def test_proxy_double_places_keys_without_a_partition_like_librdkafkas_murmur2(kafka_broker, schema_registry):
    """What the real proxy does with a keyed record that names no partition (Java's murmur2), here done
    by librdkafka's murmur2_random on the real broker: schemas.partitioning must agree with it."""
    import base64
    import json

    import requests

    name = "seed.test.placement.proxy-default"
    kafka_broker.create_topics([name], partitions=PLACEMENT_PARTITIONS)
    keys = [f"customer-{i:04d}" for i in range(300)]
    body = {"records": [{"key": base64.b64encode(k.encode()).decode(), "value": base64.b64encode(b"v").decode()}
                        for k in keys]}
    with HttpProxyDouble(None, forward_bootstrap=kafka_broker.bootstrap) as proxy:
        reply = requests.post(f"{proxy.url}/topics/{name}", data=json.dumps(body), timeout=60,
                              headers={"Content-Type": "application/vnd.kafka.binary.v2+json"})
    assert reply.status_code == 200
    assert [o["partition"] for o in reply.json()["offsets"]] == [partition_for_key(k, PLACEMENT_PARTITIONS)
                                                                 for k in keys]
    count, got = _read_back(kafka_broker.bootstrap, name, len(keys))
    _assert_murmur2_placement(count, got, keys)


JAVA_PARTITIONER = """
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.utils.Utils;
public class KafkaPartition {
    public static void main(String[] args) throws Exception {
        int partitions = Integer.parseInt(args[0]);
        java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            byte[] key = java.util.HexFormat.of().parseHex(line.substring(1));  // "k" + hex: "k" is b""
            System.out.println(Utils.murmur2(key) + " " + BuiltInPartitioner.partitionForKey(key, partitions));
        }
    }
}
"""


def test_partition_for_key_equals_kafkas_own_java_partitioner(tmp_path):
    """Kafka's BuiltInPartitioner.partitionForKey (kafka-clients, the Java producer's and ksqlDB's code) on
    random keys of every length 0..40, plus UTF-8 customer ids."""
    import random
    import shutil

    from schemas.partitioning import murmur2

    assert any(KAFKA_JARS.glob("kafka-clients-*.jar")) and shutil.which("java"), "needs java and make jars"
    source = tmp_path / "KafkaPartition.java"
    source.write_text(JAVA_PARTITIONER)
    rng = random.Random(13)
    keys = [bytes(rng.randrange(256) for _ in range(n % 41)) for n in range(1200)]
    keys += [f"{rng.getrandbits(128):032x}-kundé".encode() for _ in range(300)]
    done = subprocess.run(["java", "-cp", f"{KAFKA_JARS}/*", str(source), "12"], capture_output=True, text=True,
                          input="".join(f"k{k.hex()}\n" for k in keys), timeout=120)
    assert done.returncode == 0, done.stderr
    java = [tuple(map(int, line.split())) for line in done.stdout.splitlines()]
    assert len(java) == len(keys)
    assert [(murmur2(k), partition_for_key(k, 12)) for k in keys] == java


# ---- python -m seed --transport kafka on a dead or wrong bootstrap address (issue 13, defect 4) ---------------


def _run_kafka_seed(bootstrap: str, registry_url: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SEED_", "PUBLISH_"))}
    environ.update(PYTHONPATH=str(REPO), KAFKA_BOOTSTRAP_SERVERS=bootstrap, SCHEMA_REGISTRY_URL=registry_url,
                   PUBLISH_TRANSPORT="kafka", PUBLISH_TIMEOUT_S="1", PUBLISH_MAX_RETRIES="1")
    done = subprocess.run([sys.executable, "-m", "seed", "--customers", "3", "--days", "2"], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # no librdkafka log lines around it
    assert lines[0].startswith("seed: error: ")
    return lines[0]


def test_cli_unreachable_kafka_is_one_line(schema_registry):
    dead = f"127.0.0.1:{free_port()}"
    line = _run_kafka_seed(dead, schema_registry.url)
    assert f"Kafka {dead} (KAFKA_BOOTSTRAP_SERVERS)" in line and "brokers unreachable" in line


def test_cli_kafka_address_pointing_at_an_http_server_is_one_line(schema_registry):
    """KAFKA_BOOTSTRAP_SERVERS at something that is not a broker (here the registry's HTTP port)."""
    wrong = schema_registry.url.removeprefix("http://")
    line = _run_kafka_seed(wrong, schema_registry.url)
    assert f"Kafka {wrong} (KAFKA_BOOTSTRAP_SERVERS)" in line and "brokers unreachable" in line
