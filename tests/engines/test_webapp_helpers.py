"""Helpers shared by the web UI engine tests (this module holds no tests)."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas import serde, topics
from schemas.partitioning import LIBRDKAFKA_PARTITIONER
from webapp.settings import WebSettings

SECRET = secrets.token_urlsafe(24)  # per test session
TEST_DB = 9  # the session's redis-server is shared: the web UI tests use their own database


def db_url(redis_server: Any, db: int = TEST_DB) -> str:
    return redis_server.url.rsplit("/", 1)[0] + f"/{db}"


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def settings(redis_url: str, bootstrap: str = "127.0.0.1:9", registry_url: str = "mock://webapp-tests",
             **env: str) -> WebSettings:
    environ = {
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SCHEMA_REGISTRY_URL": registry_url,
        "CONSUMER_GROUP": f"webapp-test-{uuid.uuid4().hex[:10]}",
        "PUBLISH_TRANSPORT": "kafka",
        "PUBLISH_MAX_RETRIES": "1",
        "PUBLISH_TIMEOUT_S": "5",
        "REFRESH_INTERVAL_MS": "500",
        **env,
    }
    return WebSettings.from_env(environ)


@contextlib.contextmanager
def running_app(web_settings: WebSettings) -> Iterator[Any]:
    """The web app alone (it only reads Redis)."""
    from webapp import create_app

    app = create_app(web_settings)
    try:
        yield app
    finally:
        app.extensions["marketing_engine"].close()


@contextlib.contextmanager
def running_feeder(web_settings: WebSettings, **kw: Any) -> Iterator[Any]:
    """The feeder in a thread of this process (the subprocess tests run ``python -m webapp.feeder``)."""
    from webapp.feeder import Feeder

    feeder = Feeder(web_settings, **kw)
    thread = threading.Thread(target=feeder.run, name="feeder-under-test", daemon=True)
    thread.start()
    try:
        yield feeder
    finally:
        feeder.stop()
        thread.join(30)
        assert not thread.is_alive(), "the feeder did not stop"


@contextlib.contextmanager
def running(web_settings: WebSettings) -> Iterator[tuple[Any, Any]]:
    """The web app and its feeder: (app, feeder)."""
    with running_feeder(web_settings) as feeder, running_app(web_settings) as app:
        yield app, feeder


def caught_up(feeder: Any) -> bool:
    status = feeder.snapshot()
    return status.state == "running" and status.lag == 0


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # e.g. Redis down while waiting for it to come back
            last_exc = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_exc!r})"
                                                                                 if last_exc else ""))


def new_id(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def consolidated(customer_id: str, **overrides: Any) -> dict[str, Any]:
    """A consolidated row as ksql/050-consolidated.sql writes it: every field of its contract
    (schemas/json/customer_consolidated.json), nulls included."""
    row = {
        "customer_id": customer_id, "first_name": "Ada", "last_name": "Lovelace",
        "email": f"ada.{customer_id[-8:]}@example.com", "phone": None, "lifecycle_stage": "evangelist",
        "is_active": True, "created_at": 1_767_225_600_000, "profile_updated_at": 1_767_225_600_000,
        "lifetime_value": 0.0, "order_count": 0, "last_order_at": None, "activations_delivered": 0,
        "activations_failed": 0, "activations_bounced": 0, "last_engagement_at": None,
    }
    row.update(overrides)
    return row


def enriched_order(customer_id: str, order_id: str, total: float, placed_at: int, **overrides: Any) -> dict[str, Any]:
    """A record of dom.customer.order.enriched.v1 as ksql/030-orders.sql writes it."""
    row = {"customer_id": customer_id, "order_id": order_id, "order_total": total, "currency": "EUR",
           "channel": "web", "item_count": 1, "placed_at": placed_at, "first_name": "Ada", "last_name": "Lovelace",
           "email": "ada@example.com", "lifecycle_stage": "customer"}
    row.update(overrides)
    return row


def score(customer_id: str, value: float, scored_at: int = 1_767_225_600_000, **overrides: Any) -> dict[str, Any]:
    row = {"customer_id": customer_id, "score": value, "model_version": "lr-test", "behavioural_stage": "customer",
           "scored_at": scored_at}
    row.update(overrides)
    return row


def segment(customer_id: str, name: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "segment": name, "lifecycle_stage": None, "lifetime_value": None,
            "order_count": None}


def produce(bootstrap: str, topic: str, records: list[tuple[str | bytes | None, bytes | None]]) -> None:
    # Placed as ksqlDB (a Java producer) places the records these tests stand in for.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "partitioner": LIBRDKAFKA_PARTITIONER})
    errors: list[Any] = []
    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(20) == 0
    assert errors == []


def produce_json(bootstrap: str, rows: list[dict[str, Any]], topic: str = topics.CUSTOMER_CONSOLIDATED.name) -> None:
    produce(bootstrap, topic, [(row["customer_id"], json.dumps(row).encode()) for row in rows])


def avro_codec(registry_url: str, topic: topics.Topic) -> serde.TopicSerde:
    return serde.TopicSerde(serde.registry_client(registry_url), topic)


def produce_avro(bootstrap: str, registry_url: str, topic: topics.Topic, records: list[dict[str, Any]]) -> None:
    codec = avro_codec(registry_url, topic)
    produce(bootstrap, topic.name, [(r["customer_id"], codec.serialize(r)) for r in records])


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets on every partition of ``topic`` (-1001 = none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in meta.topics[topic].partitions]
        return {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    finally:
        consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    try:
        meta = consumer.list_topics(topic, timeout=10)
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in meta.topics[topic].partitions}
    finally:
        consumer.close()


def ensure_topics(kafka_broker: Any) -> None:
    kafka_broker.create_topics([t.name for t in topics.ALL_TOPICS], partitions=3)
