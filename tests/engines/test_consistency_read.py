"""consistency.read on a real broker: each topic read from the oldest record kept to the end it had,
past a transactional producer's commit markers, newest record per key, tombstones honoured."""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from consistency.read import read_latest
from consistency.settings import ConsistencySettings


def test_reads_from_the_oldest_kept_record_past_commit_markers(kafka_broker):
    topic = f"read-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topics([topic], partitions=2)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": f"tx-{topic}"})
    producer.init_transactions(30)
    for batch in (
        [("a", {"n": 1}), ("b", {"n": 1}), ("gone", {"n": 0})],
        [("a", {"n": 2}), ("c", {"n": 1}), ("gone", None)],  # None: a tombstone
    ):
        producer.begin_transaction()
        for key, value in batch:
            producer.produce(topic, key=key.encode(), value=None if value is None else json.dumps(value).encode(),
                             partition=1 if key == "c" else 0)
        producer.commit_transaction(30)
    # Retention took the head of partition 0 (a compacted or expired topic starts above offset 0).
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 1)]).values():
        future.result(30)
    settings = ConsistencySettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
                                             "CONSISTENCY_READ_TIMEOUT_S": "30"})
    started = time.monotonic()
    found = read_latest(settings, topic, json.loads)
    took = time.monotonic() - started
    kept = {k: v for k, (v, _) in found.items()}
    # partition 0 lost its first record (a's first value); the tombstone removed "gone"
    assert kept == {"a": {"n": 2}, "b": {"n": 1}, "c": {"n": 1}}
    assert took < 15, f"the commit markers must not keep it waiting for the timeout ({took:.1f}s)"
