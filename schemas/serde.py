"""Confluent wire format (magic byte 0 + 4-byte big-endian schema id + Avro body) on the standard
client library: confluent-kafka's SchemaRegistryClient, AvroSerializer and AvroDeserializer, with
fastavro underneath. Also the HTTP-proxy payload helper (Redpanda's proxy takes binary only)."""

from __future__ import annotations

import base64
import datetime as dt
import struct
from collections.abc import Mapping
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas.topics import Topic

MAGIC_BYTE = 0
HEADER_SIZE = 5
_HEADER = struct.Struct(">bI")


class FramingError(ValueError):
    """Bytes that are not a Confluent-framed record (bad magic byte or truncated header)."""


def registry_client(url: str, **extra: Any) -> SchemaRegistryClient:
    """A registry client; ``mock://name`` gives confluent-kafka's in-memory registry."""
    return SchemaRegistryClient.new_client({"url": url, **extra})


class TopicSerde:
    """Serializer and deserializer for one Avro topic's values under subject ``<topic>-value``."""

    def __init__(self, client: SchemaRegistryClient, topic: Topic, *, auto_register: bool = True):
        if topic.value_format != "avro":
            raise ValueError(f"topic {topic.name} is not Avro ({topic.value_format})")
        self.topic = topic
        self._ctx = SerializationContext(topic.name, MessageField.VALUE)
        self._serializer = AvroSerializer(
            client, topic.schema_str, conf={"auto.register.schemas": auto_register, "use.latest.version": not auto_register}
        )
        # No reader schema: decode with the writer's schema looked up by the id in the header.
        self._deserializer = AvroDeserializer(client)

    def serialize(self, record: Mapping[str, Any]) -> bytes:
        return self._serializer(dict(record), self._ctx)

    def deserialize(self, data: bytes) -> dict[str, Any]:
        return self._deserializer(data, self._ctx)


def frame(schema_id: int, body: bytes) -> bytes:
    return _HEADER.pack(MAGIC_BYTE, schema_id) + body


def parse_frame(data: bytes) -> tuple[int, bytes]:
    """Split a framed record into (schema id, Avro body); FramingError names what is wrong."""
    if len(data) < HEADER_SIZE:
        raise FramingError(f"truncated: {len(data)} bytes, a framed record has at least {HEADER_SIZE}")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise FramingError(f"bad magic byte {magic:#04x}, expected 0x00")
    return schema_id, data[HEADER_SIZE:]


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def proxy_record(key: str | bytes | None, value: bytes | None, partition: int | None = None) -> dict[str, Any]:
    """One record of a ``POST /topics/<topic>`` body in ``application/vnd.kafka.binary.v2+json``."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    record: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if partition is not None:
        record["partition"] = partition
    return record


def to_millis(value: int | dt.datetime) -> int:
    """Epoch millis from what fastavro hands back for timestamp-millis (aware datetime) or an int."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(round(value.timestamp() * 1000))
    return int(value)
