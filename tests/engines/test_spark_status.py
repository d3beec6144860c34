"""The Spark jobs' per-batch status (spark/status.py) on the real broker, Spark local and Delta: published
after the Delta commit with the batch's newest event time, and never for a batch whose write failed."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from delta.tables import DeltaTable
from pyspark.errors import StreamingQueryException

from schemas import serde, topics
from spark import tables
from spark.jobs import bronze, gold, silver
from tests.engines.test_spark_pipeline import DAY, ORD, T0, A, P, activation, order, profile
from tests.support import pipeline


@pytest.fixture
def env(kafka_broker, schema_registry, delta_root):
    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(delta_root), pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, settings)
    return settings


def statuses(settings) -> list[tuple[str, dict]]:
    """Every (key, record) on the settings' status topic, in order."""
    topic = settings.topic(topics.PIPELINE_STATUS)
    codec = serde.TopicSerde(serde.registry_client(settings.schema_registry_url), topic)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "status-test",
                         "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic.name, timeout=10).topics[topic.name].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic.name, p, 0) for p in parts])
        out, done = [], {p for p, end in ends.items() if end == 0}
        while len(done) < len(ends):
            msg = consumer.poll(5)
            assert msg is not None, "the status topic ended early"
            if msg.error():
                continue
            record = codec.deserialize(msg.value())
            out.append((msg.key().decode(), {k: serde.to_millis(v) if k.endswith("_at") and v is not None else v
                                             for k, v in record.items()}))
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
        return out
    finally:
        consumer.close()


def commit_ms(spark, path: str, token: str) -> int:
    """The Delta commit time of the commit tagged ``token``."""
    (row,) = [r for r in DeltaTable.forPath(spark, path).history().collect() if r.userMetadata == token]
    return int(row.timestamp.timestamp() * 1000)


def test_each_committed_batch_publishes_its_newest_event_time_after_the_commit(spark, kafka_broker, env):
    events = [
        (P, "c1", profile("c1", T0 + DAY)),
        (P, "c1", profile("c1", T0 + 3 * DAY)),  # two versions of one customer: silver keeps one row
        (ORD, "c1", order("o1", "c1", T0 + 2 * DAY, 10.0)),
        (ORD, "c1", order("o2", "c1", T0 + 5 * DAY, 30.0)),  # the newest event of the batch
        (A, "c1", activation("a1", "c1", T0 + 4 * DAY, "delivered")),
        # a probe customer (make verify): named in the status of every batch that committed its rows
        (P, "probe-0a1b2c", profile("probe-0a1b2c", T0 + DAY)),
        (ORD, "probe-0a1b2c", order("probe-o1", "probe-0a1b2c", T0 + DAY, 1.0)),
    ]
    pipeline.produce(kafka_broker, env, events)
    pipeline.run(bronze, spark, env)
    ((key, bronze_status),) = statuses(env)
    newest = max(v["updated_at"] if t is P else v["placed_at"] if t is ORD else v["delivered_at"] for t, _, v in events)
    assert key == "bronze"
    assert bronze_status["job"] == "bronze" and bronze_status["query"] == "bronze" and bronze_status["batch_id"] == 0
    assert bronze_status["rows"] == len(events)
    assert bronze_status["newest_event_at"] == newest == T0 + 5 * DAY
    assert bronze_status["probes"] == ["probe-0a1b2c"]
    # published after the Delta commits of the batch, never before
    for entity in ("customer_profile", "order_placed", "activation_status"):
        assert bronze_status["committed_at"] >= commit_ms(spark, env.table("bronze", entity), f"bronze:{entity}@0")

    pipeline.run(silver, spark, env)
    found = dict(statuses(env)[1:])
    assert set(found) == {"silver_customers", "silver_orders", "silver_activations"}
    assert {q: (s["job"], s["batch_id"], s["rows"], s["newest_event_at"], s["probes"])
            for q, s in found.items()} == {
        "silver_customers": ("silver", 0, 2, T0 + 3 * DAY, ["probe-0a1b2c"]),
        "silver_orders": ("silver", 0, 3, T0 + 5 * DAY, ["probe-0a1b2c"]),
        "silver_activations": ("silver", 0, 1, T0 + 4 * DAY, []),
    }
    for query, s in found.items():
        entity = query.removeprefix("silver_")
        assert s["committed_at"] >= commit_ms(spark, env.table("silver", entity), f"silver:{entity}@0")
        assert s["committed_at"] >= s["newest_event_at"]

    pipeline.run(gold, spark, env)
    ((key, g),) = statuses(env)[4:]
    (row,) = spark.read.format("delta").load(env.table("gold", "c360")).where("customer_id = 'c1'").collect()
    # gold's rows carry the newest event time seen (updated_at = as_of): that is the layer's event time
    assert (key, g["job"], g["batch_id"], g["rows"], g["probes"]) == ("gold_c360", "gold", 0, 2, ["probe-0a1b2c"])
    assert g["newest_event_at"] == int(row.updated_at.timestamp() * 1000) == T0 + 5 * DAY
    assert g["committed_at"] >= commit_ms(spark, env.table("gold", "c360"), "gold:c360@0")


def test_no_status_for_a_batch_whose_write_failed(spark, kafka_broker, env, monkeypatch):
    pipeline.produce(kafka_broker, env, [(P, "c9", profile("c9", T0)), (ORD, "c9", order("o9", "c9", T0 + DAY, 5.0))])
    real_append = tables.append_once

    def orders_fail(df, path, app_id, batch_id, *args, **kwargs):
        if app_id.endswith(":order_placed"):
            raise OSError("disk full (injected)")
        return real_append(df, path, app_id, batch_id, *args, **kwargs)

    monkeypatch.setattr(tables, "append_once", orders_fail)
    with pytest.raises(StreamingQueryException, match="disk full"):
        pipeline.run(bronze, spark, env)
    # the profile table was appended before the failure, yet the batch did not commit: no status
    assert tables.committed(spark, env.table("bronze", "customer_profile"), "bronze:customer_profile@0")
    assert statuses(env) == []

    monkeypatch.setattr(tables, "append_once", real_append)
    pipeline.run(bronze, spark, env)  # the replay writes what was missing, then says so
    ((key, s),) = statuses(env)
    assert (key, s["batch_id"], s["rows"], s["newest_event_at"]) == ("bronze", 0, 1, T0 + DAY)
