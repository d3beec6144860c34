"""The Spark layers' freshness, for the insights page's pipeline health: the feeder tails
``dom.pipeline.batch.status.v1``, where each Spark streaming query publishes its committed batches
(``spark/status.py``; contract ``schemas/avro/pipeline_batch_status.avsc``), and keeps the newest
record per query in its typed status (``FeederStatus.layers``, written to Redis with the rest of it).

The topic is keyed by query name and holds one small record per batch, so reading its last
:data:`TAIL` records per partition at start finds every query's newest batch (compacted or not) and
no position needs storing: a restarted feeder reads the same tail again and gets the same answer.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from schemas import topics
from webapp import records as rec
from webapp.status import LayerStatus

log = logging.getLogger("webapp.feeder")

TAIL = 1000  # records per partition read at start: far more than the queries there are
TOPIC = topics.PIPELINE_STATUS


class LayerFeed:
    """A second, assignment-only consumer beside the feeder's main one (this topic's keys are query
    names, not customer ids, and its records are not cache data)."""

    def __init__(self, conf: dict[str, Any], registry: Any):
        self._conf = conf
        self._contract = rec.AvroContract(registry, TOPIC)
        self._consumer: Consumer | None = None
        self._assigned = False
        self._logged: set[str] = set()
        self.latest: dict[str, LayerStatus] = {}
        self.mismatches = 0

    def close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:  # a broker that is gone must not mask what stopped the feeder
                log.debug("layer status consumer close failed", exc_info=True)
            self._consumer = None
            self._assigned = False

    def poll(self) -> bool:
        """Read what arrived since the last call; True when a query's newest batch changed."""
        if self._consumer is None:
            self._consumer = Consumer(self._conf)
        if not self._assigned and not self._assign():
            return False
        changed = False
        for msg in self._consumer.consume(500, 0):
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self._once(f"kafka error: {err.str()}")
                continue
            try:
                layer = self._decode(msg.key(), msg.value())
            except rec.RegistryUnavailable as exc:
                self._once(f"schema registry unavailable ({exc}); read again on the next turn")
                self._consumer.seek(TopicPartition(msg.topic(), msg.partition(), msg.offset()))
                break
            except rec.Mismatch as exc:
                self.mismatches += 1
                self._once(f"record {msg.topic()}[{msg.partition()}]@{msg.offset()} does not match its contract: {exc}")
                continue
            if layer is not None and self.latest.get(layer.query) != layer:
                self.latest[layer.query] = layer
                changed = True
        return changed

    def _assign(self) -> bool:
        assert self._consumer is not None
        try:
            meta = self._consumer.list_topics(TOPIC.name, timeout=2)
            t = meta.topics.get(TOPIC.name)
            if t is None or t.error or not t.partitions:
                self._once(f"topic {TOPIC.name} not on the broker yet: no Spark layer freshness")
                return False
            assignment = []
            for p in t.partitions:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(TOPIC.name, p), timeout=2)
                start = max(low, high - TAIL) if high >= 0 else OFFSET_END
                assignment.append(TopicPartition(TOPIC.name, p, start))
        except KafkaException as exc:
            self._once(f"cannot read {TOPIC.name}: {exc}")
            return False
        self._consumer.assign(assignment)
        self._assigned = True
        return True

    def _decode(self, key: bytes | None, value: bytes | None) -> LayerStatus | None:
        if value is None:
            return None  # a tombstone: nothing to show, the previous record stays
        record = self._contract.decode(value)
        query = record["query"]
        if key is not None and key != query.encode():
            raise rec.Mismatch("key differs from the value's query")
        return LayerStatus(job=record["job"], query=query, batch_id=record["batch_id"], rows=record["rows"],
                           newest_event_ms=record["newest_event_at"], committed_ms=record["committed_at"])

    def _once(self, text: str) -> None:
        kind = text.split(":", 1)[0]
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("spark layer status: %s (logged once)", text)
