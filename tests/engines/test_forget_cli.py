"""python -m forget on a real broker (the Schema Registry is the TEST DOUBLE): the request is on the
erasure topic keyed by the customer, decodable with its contract; an unreachable broker, a missing
topic and a bad id are each one line and exit 2."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer

from schemas import serde, topics
from schemas.partitioning import partition_for_key

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "forget", *args], cwd=REPO, env=environ, capture_output=True,
                          text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    found = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                found.append(msg)
    finally:
        consumer.close()
    return found


def test_request_is_published_keyed_by_customer_and_twice_is_fine(kafka_broker, schema_registry):
    prefix = f"f{uuid.uuid4().hex[:6]}."
    topic = prefix + topics.CUSTOMER_ERASURE.name
    profiles = prefix + topics.CUSTOMER_PROFILE.name
    kafka_broker.create_topics([topic, profiles], partitions=3)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "SCHEMA_REGISTRY_URL": schema_registry.url,
           "TOPIC_PREFIX": prefix, "FORGET_REQUESTED_BY": "ops@example.com"}
    first = run_cli("cust-42", **env)
    second = run_cli("cust-42", **env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "requested erasure of customer cust-42" in first.stdout and topic in first.stdout
    msgs = read_all(kafka_broker.bootstrap, topic, 2)
    assert len(msgs) == 2
    codec = serde.TopicSerde(serde.registry_client(schema_registry.url),
                             dataclasses.replace(topics.CUSTOMER_ERASURE, name=topic),
                             auto_register=False)
    records = [codec.deserialize(m.value()) for m in msgs]
    assert {m.key() for m in msgs} == {b"cust-42"}
    assert len({m.partition() for m in msgs}) == 1  # keyed: one partition, requests in order
    assert {r["customer_id"] for r in records} == {"cust-42"}
    assert {r["requested_by"] for r in records} == {"ops@example.com"}
    assert len({r["request_id"] for r in records}) == 2
    assert all(r["request_id"] in (first.stdout + second.stdout) for r in records)
    # ksqlDB's profile is overwritten by a redacted version, in the partition ksqlDB's join reads (murmur2)
    redacted = read_all(kafka_broker.bootstrap, profiles, 2)
    profile_codec = serde.TopicSerde(serde.registry_client(schema_registry.url),
                                     dataclasses.replace(topics.CUSTOMER_PROFILE, name=profiles), auto_register=False)
    assert {m.partition() for m in redacted} == {partition_for_key(b"cust-42", 3)}
    for msg in redacted:
        value = profile_codec.deserialize(msg.value())
        assert msg.key() == b"cust-42" and value["customer_id"] == "cust-42"
        assert (value["email"], value["first_name"], value["last_name"], value["phone"]) == ("", "", "", None)
        assert value["is_active"] is False and value["lifecycle_stage"] == "erased"


def test_unreachable_broker_is_one_line(schema_registry):
    port = free_port()
    done = run_cli("cust-1", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}", SCHEMA_REGISTRY_URL=schema_registry.url)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"127.0.0.1:{port}" in lines[0] and "KAFKA_BOOTSTRAP_SERVERS" in lines[0] and "unreachable" in lines[0]


def test_missing_topic_and_bad_id_are_one_line(kafka_broker, schema_registry):
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "SCHEMA_REGISTRY_URL": schema_registry.url,
           "TOPIC_PREFIX": f"missing{uuid.uuid4().hex[:6]}."}
    missing = run_cli("cust-1", **env)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "not found" in missing.stderr and env["TOPIC_PREFIX"] + topics.CUSTOMER_ERASURE.name in missing.stderr
    bad = run_cli("no such id!", **env)
    assert bad.returncode == 2 and bad.stderr.strip() == "forget: not a customer id: 'no such id!' " \
        "(expected 1-64 letters, digits or _.:-, starting with a letter or digit)"
