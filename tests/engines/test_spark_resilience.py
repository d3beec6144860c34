"""Restart, replay, bad payloads and schema evolution on the real engines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import Schema

from schemas import serde, topics
from schemas.topics import AVRO_DIR
from spark.jobs import bronze, gold, silver
from tests.engines.test_spark_pipeline import DAY, T0, activation, order, profile
from tests.support import pipeline

P, ORD, A = topics.CUSTOMER_PROFILE, topics.ORDER_PLACED, topics.ACTIVATION_STATUS


@pytest.fixture
def env(kafka_broker, schema_registry, delta_root):
    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(delta_root), pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, settings)
    return settings


def _read(spark, path):
    return spark.read.format("delta").load(path)


def _forget_last_commit(checkpoint: str) -> int:
    """Make Spark believe the last micro-batch never finished: its Delta write is done, its
    checkpoint commit is not (the crash window). On restart the batch is replayed."""
    commits = sorted(Path(checkpoint, "commits").glob("[0-9]*"), key=lambda p: int(p.name))
    last = commits[-1]
    last.unlink()
    crc = last.with_name(f".{last.name}.crc")
    if crc.exists():
        crc.unlink()
    return int(last.name)


def test_stop_mid_stream_and_replayed_batches_lose_and_duplicate_nothing(spark, kafka_broker, env):
    first = [(P, f"c{i}", profile(f"c{i}", T0 + i)) for i in range(5)] + [
        (ORD, f"c{i}", order(f"o{i}", f"c{i}", T0 + DAY + i, 10.0 + i)) for i in range(5)
    ]
    pipeline.produce(kafka_broker, env, first)
    # A continuously running bronze (1 s trigger), stopped from outside once the first events are in.
    streaming = pipeline.job_settings(env.bootstrap_servers, env.schema_registry_url, env.delta_root, env.topic_prefix,
                                      TRIGGER_INTERVAL="1 second")
    (query,) = bronze.start(spark, streaming)
    try:
        for _ in range(240):
            if _read(spark, env.table("bronze", "order_placed")).count() == 5:
                break
            query.awaitTermination(0.5)
    finally:
        query.stop()
    assert _read(spark, env.table("bronze", "order_placed")).count() == 5

    second = [(ORD, f"c{i}", order(f"o{i + 10}", f"c{i}", T0 + 2 * DAY + i, 1.0)) for i in range(5)]
    second += [(A, "c0", activation("a0", "c0", T0 + 2 * DAY, "delivered"))]
    pipeline.produce(kafka_broker, env, second)
    pipeline.run(bronze, spark, env)  # resumes from the checkpoint
    orders_bronze = _read(spark, env.table("bronze", "order_placed"))
    assert orders_bronze.count() == 10
    assert orders_bronze.select("partition", "offset").distinct().count() == 10

    pipeline.run(silver, spark, env)
    pipeline.run(gold, spark, env)
    before = {r.customer_id: r.asDict() for r in _read(spark, env.table("gold", "c360")).collect()}
    assert sum(r["order_count"] for r in before.values()) == 10

    # Crash window: the last silver and gold batches committed to Delta but not to the checkpoint.
    _forget_last_commit(env.checkpoint("silver", "orders"))
    replayed = _forget_last_commit(env.checkpoint("gold", "c360"))
    pipeline.run(silver, spark, env)
    pipeline.run(gold, spark, env)
    after = {r.customer_id: r.asDict() for r in _read(spark, env.table("gold", "c360")).collect()}
    assert _read(spark, env.table("silver", "orders")).count() == 10
    assert after == before, "a replayed gold batch must not add its deltas twice"
    assert Path(env.checkpoint("gold", "c360"), "commits", str(replayed)).exists()


def test_bad_payloads_go_to_quarantine_and_dead_letter_and_the_stream_goes_on(spark, kafka_broker, schema_registry, env):
    good = profile("good", T0)
    codec = serde.TopicSerde(serde.registry_client(env.schema_registry_url), env.topic(P))
    framed = codec.serialize(good)
    schema_id, body = serde.parse_frame(framed)
    bad = {
        "bad magic byte 0x01": b"\x01" + framed[1:],
        "truncated: fewer than 5 bytes": b"\x00\x00\x01",
        "unknown schema id 99999": serde.frame(99999, body),
        "corrupt Avro body": serde.frame(schema_id, b"\x02\xff\xff\xff\xff\xff\xff\x0f"),
    }
    pipeline.produce(kafka_broker, env, [(P, "good", good)] + [(P, f"bad{i}", v) for i, v in enumerate(bad.values())])
    pipeline.produce(kafka_broker, env, [(P, "after", profile("after", T0 + 1))])
    pipeline.run(bronze, spark, env)

    assert sorted(r.customer_id for r in _read(spark, env.table("bronze", "customer_profile")).collect()) == ["after", "good"]
    quarantined = {r.reason: r for r in _read(spark, env.table("quarantine", "records")).collect()}
    assert set(quarantined) == set(bad)
    for reason, value in bad.items():
        assert bytes(quarantined[reason].value) == value, "the original bytes are kept"
        assert quarantined[reason].topic == env.topic(P).name

    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": env.topic_prefix + "dlq",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([env.topic(topics.DEAD_LETTER).name])
    letters = {}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                headers = {k: v.decode() for k, v in msg.headers()}
                letters[headers["reason"]] = (msg.value(), headers)
            if len(letters) == len(bad):
                break
    finally:
        consumer.close()
    assert set(letters) == set(bad)
    for reason, (value, headers) in letters.items():
        assert value == bad[reason]
        assert headers["source.topic"] == env.topic(P).name and headers["source.offset"].isdigit()


def test_old_and_new_schema_versions_both_decode(spark, kafka_broker, schema_registry, env):
    topic = env.topic(P)
    client = serde.registry_client(env.schema_registry_url)
    v1 = (AVRO_DIR / "history" / "customer_profile_upsert" / "v1.avsc").read_text()
    v1_id = client.register_schema(topic.subject, Schema(json.dumps(json.loads(v1)), "AVRO"))
    # A producer still on v1 (no phone field) and one on the current contract (v2, optional phone).
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    old = AvroSerializer(client, v1, conf={"auto.register.schemas": False, "use.latest.version": False,
                                           "use.schema.id": v1_id})
    old_record = {k: v for k, v in profile("old", T0).items() if k != "phone"}
    old_bytes = old(old_record, SerializationContext(topic.name, MessageField.VALUE))
    new_record = profile("new", T0, phone="+4930123456")
    pipeline.produce(kafka_broker, env, [(P, "old", old_bytes), (P, "new", new_record)])
    pipeline.run(bronze, spark, env)
    rows = {r.customer_id: r for r in _read(spark, env.table("bronze", "customer_profile")).collect()}
    assert set(rows) == {"old", "new"}
    assert rows["old"].phone is None and rows["old"].schema_id == v1_id
    assert rows["new"].phone == "+4930123456" and rows["new"].schema_id != v1_id
    assert _read(spark, env.table("quarantine", "records")).count() == 0
