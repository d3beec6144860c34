"""The one way our short-lived Kafka clients (python -m forget, forget.check, consistency) find a topic:
its partitions, or one line naming the broker, the setting that points there and what is missing."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException

from common.errors import one_line


def topic_partitions(client: Any, topic: str, where: str, error: type[Exception]) -> list[int]:
    """Partition ids of ``topic`` through ``client`` (a Consumer or an AdminClient); ``error`` with one
    line when Kafka cannot be reached or the topic does not exist. ``where``: "Kafka at <addr> (<ENV>)"."""
    try:
        meta = client.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException as exc:
        raise error(f"{where} unreachable: {one_line(exc, 200)}") from None
    if meta is None or meta.error is not None or not meta.partitions:
        raise error(f"topic {topic} not found on {where}: is the stack up?")
    return sorted(meta.partitions)
