"""Drive the Spark jobs in-process on the test session: produce framed events, run a job to completion."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from confluent_kafka import Producer

from schemas import serde, topics
from schemas.partitioning import LIBRDKAFKA_PARTITIONER
from schemas.topics import Topic
from spark.settings import JobSettings


def job_settings(broker_bootstrap: str, registry_url: str, delta_root: str, prefix: str, **extra: str) -> JobSettings:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker_bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
        "DELTA_ROOT": delta_root,
        "TOPIC_PREFIX": prefix,
        "TRIGGER_INTERVAL": "available-now",
        **extra,
    }
    return JobSettings.from_env(env)


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


def create_topics(broker: Any, settings: JobSettings) -> None:
    broker.create_topics([settings.topic(t).name for t in topics.ALL_TOPICS])


def produce(broker: Any, settings: JobSettings, events: Iterable[tuple[Topic, str, dict[str, Any] | bytes]]) -> int:
    """Serialize (through the registry) and produce; bytes values go out as they are (bad payloads)."""
    client = serde.registry_client(settings.schema_registry_url)
    codecs: dict[str, serde.TopicSerde] = {}
    # Keys placed as the product's producers place them (Java murmur2).
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "partitioner": LIBRDKAFKA_PARTITIONER})
    count = 0
    for contract, key, value in events:
        topic = settings.topic(contract)
        if isinstance(value, bytes):
            data = value
        else:
            codec = codecs.get(topic.name) or codecs.setdefault(topic.name, serde.TopicSerde(client, topic))
            data = codec.serialize(value)
        producer.produce(topic.name, key=key.encode(), value=data)
        count += 1
    assert producer.flush(30) == 0, "not every event was acknowledged"
    return count


def run(job: ModuleType, spark: Any, settings: JobSettings) -> None:
    """Run a job's queries with its (available-now) trigger until they finish; re-raise failures."""
    for query in job.start(spark, settings):
        query.awaitTermination()
        if query.exception() is not None:
            raise RuntimeError(f"{query.name}: {query.exception()}")
