"""Propensity: simulated history -> bronze/silver/gold -> trained model -> score stream on the topic,
decoded with confluent-kafka's AvroDeserializer; evaluation against the simulator's ground truth."""

from __future__ import annotations

import time

import pytest
import requests
from confluent_kafka import Consumer

from schemas import serde, topics
from seed.simulator import SimConfig, Simulator, write_ground_truth
from spark import model as M
from spark.jobs import bronze, evaluate, gold, score, silver, train
from tests.support import pipeline
from tests.support.schema_registry_double import SchemaRegistryDouble


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, kafka_broker, schema_registry, spark):
    root = tmp_path_factory.mktemp("scoring")
    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(root / "delta"),
                                     pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, settings)
    config = SimConfig(customers=400, days=60, seed=11, label_window_days=14)
    sim = Simulator(config)
    sent = pipeline.produce(kafka_broker, settings, ((e.topic, e.key, e.record) for e in sim.events()))
    truth = write_ground_truth(root / "truth.csv", sim.ground_truth(), config)
    for job in (bronze, silver, gold):
        pipeline.run(job, spark, settings)
    return settings, truth, sent


def test_every_simulated_customer_reaches_gold(spark, simulated):
    settings, truth, sent = simulated
    truth_ids = {line.split(",")[0] for line in truth.read_text().splitlines()[1:]}
    c360 = spark.read.format("delta").load(settings.table("gold", "c360"))
    assert sent > 400
    assert {r.customer_id for r in c360.select("customer_id").collect()} == truth_ids
    stages = {r.behavioural_stage for r in c360.select("behavioural_stage").distinct().collect()}
    assert stages <= {"prospect", "customer", "evangelist", "churn-risk"} and len(stages) >= 3


def test_model_beats_chance_and_is_reported_beside_rfm(spark, simulated, capsys):
    settings, truth, _ = simulated
    results = evaluate.evaluate(spark, settings, str(truth))
    print(evaluate.report(results))
    assert results["model"]["customers"] == results["rfm"]["customers"] == 400
    assert results["model"]["auc"] > 0.65, results
    assert 0.0 < results["base_rate"]["positive_share"] < 1.0
    assert "AUC" in capsys.readouterr().out


def test_score_stream_publishes_decodable_framed_avro(spark, kafka_broker, simulated):
    settings, _, _ = simulated
    version = train.run(spark, settings)
    assert M.latest_version(settings.models) == version
    pipeline.run(score, spark, settings)
    scored = spark.read.format("delta").load(settings.table("gold", "propensity"))
    assert scored.count() == 400
    assert scored.where("score < 0 OR score > 1").count() == 0

    topic = settings.topic(topics.PROPENSITY_SCORE)
    codec = serde.TopicSerde(serde.registry_client(settings.schema_registry_url), topic)
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": topic.name + ".test",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic.name])
    records = {}
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                assert msg.value()[0] == 0, "Confluent magic byte"
                value = codec.deserialize(msg.value())
                assert msg.key().decode() == value["customer_id"]
                records[value["customer_id"]] = value
            if len(records) == 400:
                break
    finally:
        consumer.close()
    assert len(records) == 400
    sample = next(iter(records.values()))
    assert sample["model_version"] == version
    assert sample["behavioural_stage"] in {"prospect", "customer", "evangelist", "churn-risk"}
    assert 0.0 <= sample["score"] <= 1.0 and sample["scored_at"] is not None


def test_the_score_job_registers_its_contracts_before_it_waits_for_gold(spark, monkeypatch, tmp_path):
    """ksqlDB's segments read the score topic, and the KSQL operator creates them once its subject exists:
    the job registers it (and gold's metrics topic) as it starts, not after gold and a model exist."""
    registry = SchemaRegistryDouble().start()

    class StillWaiting(Exception):
        pass

    def wait_for(_spark, path, *args, **kwargs):
        raise StillWaiting(path)  # gold is not there yet: stop the start here

    try:
        settings = pipeline.job_settings("127.0.0.1:9", registry.url, str(tmp_path / "delta"), pipeline.new_prefix())
        monkeypatch.setattr(score.tables, "wait_for", wait_for)
        with pytest.raises(StillWaiting, match="c360"):
            score.start(spark, settings)
        subjects = requests.get(f"{registry.url}/subjects", timeout=5).json()
        assert settings.topic(topics.PROPENSITY_SCORE).subject in subjects
        assert settings.topic(topics.CUSTOMER_C360).subject in subjects
    finally:
        registry.stop()
