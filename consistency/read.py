"""Reading both sides and gold's horizon from Kafka: every topic up to the end it had when the run began."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from common.errors import one_line
from common.kafka import topic_partitions
from consistency.compare import METRICS, Side
from consistency.settings import ConsistencySettings
from schemas import serde, topics

# The Spark queries between gold's table and dom.customer.gold.v1 (spark/jobs/gold.py, spark/jobs/score.py):
# gold's side is complete up to the older of their newest commits.
GOLD_SIDE_QUERIES = ("gold_c360", "score")


# librdkafka's own reconnect chatter is not the check's output: an unreachable broker is one line (Unreachable).
_QUIET = logging.getLogger("consistency.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class Unreachable(RuntimeError):
    """Kafka or the registry cannot be read; ``str()`` is the one line printed."""


def _registry_unreachable(settings: ConsistencySettings, exc: Exception) -> Unreachable:
    return Unreachable(f"Schema Registry at {settings.schema_registry_url} "
                       f"({settings.env_name('schema_registry_url')}): {one_line(exc, 200)}")


def _millis(value: Any) -> int | None:
    """Epoch ms of a time either side writes: JSON millis (the view) or a decoded Avro timestamp (gold)."""
    return None if value is None else serde.to_millis(value)


def read_latest(settings: ConsistencySettings, topic: str, decode: Callable[[bytes], dict[str, Any]]) -> dict[
        str, tuple[dict[str, Any], int]]:
    """key -> (decoded value, record timestamp ms) of the newest record per key; a tombstone removes the key."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"consistency-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "socket.connection.setup.timeout.ms": 5000, "logger": _QUIET})
    where = f"Kafka at {settings.bootstrap_servers} ({settings.env_name('bootstrap_servers')})"
    latest: dict[str, tuple[dict[str, Any], int]] = {}
    try:
        partitions = topic_partitions(consumer, topic, where, Unreachable)
        ends, starts = {}, []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(topic, p, low))  # the oldest record retention/compaction kept
        consumer.assign(starts)
        deadline = time.monotonic() + settings.read_timeout_s
        while ends:
            if time.monotonic() > deadline:
                raise Unreachable(f"reading {topic} from {where} took longer than {settings.read_timeout_s:.0f}s "
                                  f"({settings.env_name('read_timeout_s')})")
            for msg in consumer.consume(1000, 1.0):
                if msg.error() is not None or msg.key() is None:
                    continue
                key = msg.key().decode(errors="replace")
                if msg.value() is None:
                    latest.pop(key, None)
                    continue
                try:
                    latest[key] = (decode(msg.value()), msg.timestamp()[1])
                except Exception:  # noqa: BLE001, S112 - a record that breaks its contract is not a side's state
                    continue
            # Done with a partition once the position passed the end taken at the start (a position, not
            # the last offset seen: a transactional producer's commit marker takes the last offset).
            for tp in consumer.position([TopicPartition(topic, p) for p in ends]):
                if tp.offset >= ends[tp.partition]:
                    ends.pop(tp.partition)
    finally:
        consumer.close()
    return latest


def _sides(records: dict[str, tuple[dict[str, Any], int]]) -> dict[str, Side]:
    return {key: Side({m: _millis(value.get(m)) if m.endswith("_at") else value.get(m) for m in METRICS}, ts)
            for key, (value, ts) in records.items()}


def view(settings: ConsistencySettings) -> dict[str, Side]:
    """ksqlDB's consolidated view (JSON, dom.customer.consolidated.v1)."""
    return _sides(read_latest(settings, settings.topic(topics.CUSTOMER_CONSOLIDATED).name, json.loads))


def gold_and_horizon(settings: ConsistencySettings) -> tuple[dict[str, Side], int | None]:
    """Gold's metrics per customer (dom.customer.gold.v1) and gold's horizon from the jobs' batch status."""
    try:
        registry = serde.registry_client(settings.schema_registry_url)
        gold_serde = serde.TopicSerde(registry, settings.topic(topics.CUSTOMER_C360), auto_register=False)
        status_serde = serde.TopicSerde(registry, settings.topic(topics.PIPELINE_STATUS), auto_register=False)
        gold = _sides(read_latest(settings, settings.topic(topics.CUSTOMER_C360).name, gold_serde.deserialize))
        statuses = read_latest(settings, settings.topic(topics.PIPELINE_STATUS).name, status_serde.deserialize)
    except Unreachable:
        raise
    except Exception as exc:  # noqa: BLE001 - the registry client's transport errors
        raise _registry_unreachable(settings, exc) from None
    return gold, horizon(v for v, _ in statuses.values())


def erased(settings: ConsistencySettings) -> set[str]:
    """The customers an erasure was requested for (dom.customer.erasure.v1, Avro, keyed by customer id)."""
    try:
        codec = serde.TopicSerde(serde.registry_client(settings.schema_registry_url),
                                 settings.topic(topics.CUSTOMER_ERASURE), auto_register=False)
        requests = read_latest(settings, settings.topic(topics.CUSTOMER_ERASURE).name, codec.deserialize)
    except Unreachable:
        raise
    except Exception as exc:  # noqa: BLE001 - the registry client's transport errors
        raise _registry_unreachable(settings, exc) from None
    return {value["customer_id"] for value, _ts in requests.values()}


def horizon(statuses: Iterable[dict[str, Any]]) -> int | None:
    """The older of the newest commits of the queries between gold and its topic; None until each committed."""
    newest: dict[str, int] = {}
    for status in statuses:
        if status.get("query") in GOLD_SIDE_QUERIES:
            committed = _millis(status["committed_at"])
            newest[status["query"]] = max(committed, newest.get(status["query"], committed))
    if set(newest) != set(GOLD_SIDE_QUERIES):
        return None
    return min(newest.values())


def publish(settings: ConsistencySettings, record: dict[str, Any]) -> None:
    """The report on dom.pipeline.consistency.v1, keyed topics.CONSISTENCY_KEY (the newest is the current one)."""
    topic = settings.topic(topics.CONSISTENCY)
    where = f"Kafka at {settings.bootstrap_servers} ({settings.env_name('bootstrap_servers')})"
    try:
        codec = serde.TopicSerde(serde.registry_client(settings.schema_registry_url), topic)
        data = codec.serialize(record)
    except Exception as exc:  # noqa: BLE001 - the registry client's transport errors
        raise _registry_unreachable(settings, exc) from None
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all",
                         "socket.connection.setup.timeout.ms": 5000, "message.timeout.ms": 15000, "logger": _QUIET})
    errors: list[str] = []
    producer.produce(topic.name, key=topics.CONSISTENCY_KEY.encode(), value=data,
                     on_delivery=lambda err, _msg: errors.append(str(err)) if err is not None else None)
    if producer.flush(20) != 0 or errors:
        raise Unreachable(f"the report could not be published to {topic.name} on {where}: "
                          f"{errors[0] if errors else 'not acknowledged in 20 s'}")
