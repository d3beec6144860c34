"""Kafka records of the topics the feeder reads, decoded against their contracts (nothing guessed).

* JSON topics (ksqlDB): the value is checked against the topic's JSON Schema (``schemas/json/``) by
  :class:`schemas.json_contract.JsonContract`.
* Avro topics: the value is read with the writer's schema (by the id in its Confluent frame, from
  the registry) resolved to the topic's Avro contract (``schemas/avro/``) as the reader schema, so
  every decoded record has exactly the contract's fields.
* Keys are the customer id as a UTF-8 string (every producer in the project, ksqlDB's KAFKA key
  format included), except on the report topics (:data:`REPORT_KEYS`): one constant key, the newest
  record is the current report (the consistency check's, ``python -m consistency``).

A record that does not match raises :class:`Mismatch` with a short *kind* (no offsets or values in
it, so kinds stay few): the feeder counts it per topic and kind and logs each kind once.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas import serde, topics
from schemas.json_contract import JsonContract
from webapp import model

# What the feeder reads: the customer view's three topics and the two history streams.
VIEW_TOPICS = (topics.CUSTOMER_CONSOLIDATED, topics.PROPENSITY_SCORE, topics.SEGMENT_MATERIALIZED)
HISTORY_TOPICS = (topics.ORDER_ENRICHED, topics.ACTIVATION_STATUS)
# Reports about the pipeline, not customers: each keyed by one constant, the newest record is current.
REPORT_TOPICS = (topics.CONSISTENCY,)
REPORT_KEYS = {topics.CONSISTENCY.name: topics.CONSISTENCY_KEY}
# Requests to forget a customer (python -m forget): the customer is erased from the cache and stays so.
ERASURE_TOPICS = (topics.CUSTOMER_ERASURE,)
FEED_TOPICS = VIEW_TOPICS + HISTORY_TOPICS + REPORT_TOPICS + ERASURE_TOPICS


class Mismatch(ValueError):
    """A record that does not match its topic's contract; ``str()`` is the kind."""


class RegistryUnavailable(RuntimeError):
    """The Schema Registry could not be asked for a writer schema (transient: the batch is retried)."""


@dataclass(frozen=True)
class Record:
    topic: str
    customer_id: str  # the key: a customer id, or on a report topic its constant key
    value: dict[str, Any] | None  # the contract's fields; None = a tombstone
    timestamp_ms: int | None  # the Kafka record's timestamp


def customer_id_of(key: bytes | None) -> str:
    if not key:
        raise Mismatch("record without a key")
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise Mismatch("key is not UTF-8") from None
    if not model.valid_customer_id(text):
        raise Mismatch("key is not a customer id")
    return text


def _millis(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(round(value.timestamp() * 1000))
    return value


class AvroContract:
    """Reads framed Avro of one topic with its writer's schema resolved to the contract."""

    def __init__(self, registry: Any, topic: topics.Topic):
        self.topic = topic
        self.registry = registry
        self.reader = fastavro.parse_schema(json.loads(topic.schema_str))
        self._writers: dict[int, Any] = {}

    def _writer(self, schema_id: int) -> Any:
        found = self._writers.get(schema_id)
        if found is None:
            try:
                schema = self.registry.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    raise Mismatch(f"schema id {schema_id} is unknown to the registry") from None
                raise RegistryUnavailable(f"registry answered HTTP {exc.http_status_code}: {exc}") from None
            except Exception as exc:  # connection refused, DNS, timeout
                raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from None
            found = self._writers[schema_id] = fastavro.parse_schema(json.loads(schema.schema_str))
        return found

    def decode(self, data: bytes) -> dict[str, Any]:
        try:
            schema_id, body = serde.parse_frame(data)
        except serde.FramingError:
            raise Mismatch("value is not Confluent-framed Avro") from None
        writer = self._writer(schema_id)
        try:
            record = fastavro.schemaless_reader(io.BytesIO(body), writer, self.reader)
        except fastavro.read.SchemaResolutionError:
            raise Mismatch(f"writer schema id {schema_id} does not resolve to the contract") from None
        except Exception:
            raise Mismatch(f"value does not decode with writer schema id {schema_id}") from None
        if not isinstance(record, dict):
            raise Mismatch("Avro value is not a record")
        return {k: _millis(v) for k, v in record.items()}


class Decoder:
    """One per feeder: the contracts of every topic it reads."""

    def __init__(self, registry: Any):
        self.json = {t.name: JsonContract.for_topic(t) for t in FEED_TOPICS if t.value_format == "json"}
        self.avro = {t.name: AvroContract(registry, t) for t in FEED_TOPICS if t.value_format == "avro"}

    def decode(self, topic: str, key: bytes | None, value: bytes | None, timestamp_ms: int | None) -> tuple[
            Record, list[str]]:
        """The record and the contract's non-fatal remarks (an unexpected field); Mismatch when unusable."""
        if topic in REPORT_KEYS:
            return self._report(topic, key, value, timestamp_ms), []
        customer_id = customer_id_of(key)
        if value is None:
            return Record(topic, customer_id, None, timestamp_ms), []
        remarks: list[str] = []
        if topic in self.json:
            try:
                parsed = json.loads(value)
            except (ValueError, UnicodeDecodeError):
                raise Mismatch("value is not JSON") from None
            record, remarks = self.json[topic].check(parsed)
            if record is None:
                raise Mismatch("; ".join(remarks))
        else:
            record = self.avro[topic].decode(value)
        if record.get("customer_id") not in (None, customer_id):
            raise Mismatch("customer_id in the value differs from the key")
        return Record(topic, customer_id, record, timestamp_ms), remarks

    def _report(self, topic: str, key: bytes | None, value: bytes | None, timestamp_ms: int | None) -> Record:
        expected = REPORT_KEYS[topic]
        if key != expected.encode():
            raise Mismatch(f"key is not {expected!r}")
        if value is None:
            return Record(topic, expected, None, timestamp_ms)  # nothing to show: the current report stays
        record = self.avro[topic].decode(value)
        check_consistency_report(record)
        return Record(topic, expected, record, timestamp_ms)


def check_consistency_report(report: dict[str, Any]) -> None:
    """What the contract's types cannot say (its field docs do): counts are not negative and add up."""
    counts = ("customers", "checked", "agreeing", "disagreeing", "catching_up", "settle_ms")
    if any(report[name] < 0 for name in counts):
        raise Mismatch("a negative count")
    if report["checked"] != report["agreeing"] + report["disagreeing"]:
        raise Mismatch("checked is not agreeing + disagreeing")
