"""Each engine fixture proven by using it for real."""

from __future__ import annotations

import json
import urllib.request
import uuid

from confluent_kafka import Consumer, Producer

from schemas import serde, topics
from tests.support.samples import SAMPLES


def test_avro_produce_consume_round_trip_on_the_real_broker(kafka_broker, mock_registry_url):
    topic = f"fixture.avro.{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topics([topic])
    client = serde.registry_client(mock_registry_url)
    codec = serde.TopicSerde(client, topics.ORDER_PLACED)
    record = SAMPLES[topics.ORDER_PLACED.name]
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True, "acks": "all"})
    acked = []
    producer.produce(topic, key=record["customer_id"], value=codec.serialize(record),
                     on_delivery=lambda err, msg: acked.append(err))
    assert producer.flush(15) == 0
    assert acked == [None]
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        msg = None
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                break
        assert msg is not None and msg.error() is None
        assert msg.key().decode() == record["customer_id"]
        assert codec.deserialize(msg.value())["order_id"] == record["order_id"]
    finally:
        consumer.close()


def test_redis_set_get(redis_server):
    client = redis_server.client()
    client.set("fixture:key", "value")
    assert client.get("fixture:key") == "value"
    assert client.info("server")["tcp_port"] == redis_server.port


def test_spark_reads_kafka_and_round_trips_delta(spark, kafka_broker, delta_root):
    topic = f"fixture.spark.{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topics([topic])
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for i in range(5):
        producer.produce(topic, key=f"k{i}", value=json.dumps({"n": i}).encode())
    assert producer.flush(15) == 0
    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_broker.bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value", "offset")
    )
    path = str(delta_root / "fixture")
    frame.write.format("delta").mode("overwrite").save(path)
    back = spark.read.format("delta").load(path).orderBy("offset").collect()
    assert [r.key for r in back] == [f"k{i}" for i in range(5)]
    assert json.loads(back[4].value) == {"n": 4}
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()
    assert history[0].operation == "WRITE"


def test_schema_registry_double_speaks_the_documented_api(schema_registry):
    client = serde.registry_client(schema_registry.url)
    codec = serde.TopicSerde(client, topics.PROPENSITY_SCORE)
    data = codec.serialize(SAMPLES[topics.PROPENSITY_SCORE.name])
    schema_id, _ = serde.parse_frame(data)
    with urllib.request.urlopen(f"{schema_registry.url}/schemas/ids/{schema_id}") as resp:
        assert json.loads(json.loads(resp.read())["schema"])["name"] == "PropensityScore"
    try:
        urllib.request.urlopen(f"{schema_registry.url}/subjects/nope-value/versions/latest")
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as err:
        assert err.code == 404
        assert json.loads(err.read())["error_code"] == 40401
    incompatible = json.loads(topics.PROPENSITY_SCORE.schema_str)
    incompatible["fields"].append({"name": "extra", "type": "string", "doc": "required: breaks BACKWARD"})
    req = urllib.request.Request(
        f"{schema_registry.url}/subjects/{topics.PROPENSITY_SCORE.subject}/versions",
        data=json.dumps({"schema": json.dumps(incompatible)}).encode(), method="POST",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    try:
        urllib.request.urlopen(req)
        raise AssertionError("expected 409")
    except urllib.error.HTTPError as err:
        assert err.code == 409
