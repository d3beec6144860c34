"""Confluent framing through confluent-kafka's serializers (mock:// registry) and the proxy payload."""

from __future__ import annotations

import base64
import struct
import uuid

import pytest

from schemas import serde, topics
from tests.support.samples import SAMPLES


@pytest.mark.parametrize("topic", [t for t in topics.ALL_TOPICS if t.value_format == "avro"], ids=lambda t: t.name)
def test_round_trip_every_schema(topic, mock_registry_url):
    client = serde.registry_client(mock_registry_url)
    codec = serde.TopicSerde(client, topic)
    record = SAMPLES[topic.name]
    data = codec.serialize(record)
    schema_id = client.get_latest_version(topic.subject).schema_id
    assert data[0] == 0x00
    assert data[1:5] == struct.pack(">I", schema_id)
    assert serde.parse_frame(data) == (schema_id, data[5:])
    decoded = codec.deserialize(data)
    normalised = {k: serde.to_millis(v) if k.endswith("_at") and v is not None else v for k, v in decoded.items()}
    assert normalised == record


def test_same_schema_same_id_across_serdes(mock_registry_url):
    client = serde.registry_client(mock_registry_url)
    a = serde.TopicSerde(client, topics.ORDER_PLACED).serialize(SAMPLES[topics.ORDER_PLACED.name])
    b = serde.TopicSerde(client, topics.ORDER_PLACED).serialize(SAMPLES[topics.ORDER_PLACED.name])
    assert a[:5] == b[:5]


def test_serializer_rejects_a_record_that_breaks_the_contract(mock_registry_url):
    codec = serde.TopicSerde(serde.registry_client(mock_registry_url), topics.ORDER_PLACED)
    bad = {**SAMPLES[topics.ORDER_PLACED.name], "order_total": "twelve"}
    with pytest.raises(Exception, match="order_total|double|float"):
        codec.serialize(bad)


@pytest.mark.parametrize(
    "data,reason", [(b"", "truncated"), (b"\x00\x00\x01", "truncated"), (b"\x01\x00\x00\x00\x01abc", "magic")]
)
def test_parse_frame_names_what_is_wrong(data, reason):
    with pytest.raises(serde.FramingError, match=reason):
        serde.parse_frame(data)


def test_frame_header_is_magic_and_big_endian_id():
    assert serde.frame(258, b"body") == b"\x00\x00\x00\x01\x02body"


def test_proxy_record_is_base64_of_key_and_framed_value():
    customer = str(uuid.uuid4())
    value = serde.frame(7, b"\x02\x04")
    rec = serde.proxy_record(customer, value)
    assert base64.b64decode(rec["key"]).decode() == customer
    assert base64.b64decode(rec["value"]) == value
    assert "partition" not in rec
    assert serde.proxy_record(None, value, partition=2) == {"key": None, "value": rec["value"], "partition": 2}
