"""The erasure request: built, checked and published to dom.customer.erasure.v1 (keyed by customer_id)."""

from __future__ import annotations

import getpass
import logging
import time
import uuid
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from common.errors import one_line
from common.kafka import topic_partitions
from forget.settings import ForgetSettings
from schemas import serde, topics
from schemas.ids import valid_customer_id
from schemas.partitioning import LIBRDKAFKA_PARTITIONER

# librdkafka's reconnect chatter is not the CLI's output: an unreachable broker is one line (Unreachable).
_QUIET = logging.getLogger("forget.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class BadRequest(ValueError):
    """The customer id cannot be a customer's; ``str()`` is the one line printed."""


class Unreachable(RuntimeError):
    """Kafka or the registry cannot be reached; ``str()`` is the one line printed."""


def build(customer_id: str, requested_by: str = "", now_ms: int | None = None) -> dict[str, Any]:
    """The request record; the id must be one the platform could hold (the web UI's rule for ids)."""
    if not valid_customer_id(customer_id):
        raise BadRequest(f"not a customer id: {customer_id!r} (expected 1-64 letters, digits or _.:-, "
                         "starting with a letter or digit)")
    try:
        who = requested_by or getpass.getuser()
    except (OSError, KeyError):  # no user name in a bare container
        who = "unknown"
    return {"customer_id": customer_id, "request_id": str(uuid.uuid4()),
            "requested_at": int(time.time() * 1000) if now_ms is None else now_ms, "requested_by": who}


# What a redacted profile holds instead of the customer's personal fields. The contract makes the names
# and the e-mail non-null strings, and ksqlDB's LATEST_BY_OFFSET skips nulls anyway: empty strings
# overwrite them; the phone is nullable and read with ignoreNulls=false (ksql/020-profile.sql).
REDACTED = {"email": "", "first_name": "", "last_name": "", "phone": None}


def redacted_profile(request: dict[str, Any]) -> dict[str, Any]:
    """The profile upsert that overwrites the customer's personal fields wherever the latest profile wins.

    ksqlDB does not take a source tombstone out of its aggregations (confluentinc/ksql#6938), so the
    consolidated view, its state store and changelog and the compacted outputs would keep the name and
    e-mail for ever. A newer profile version with the fields empty replaces them in every one of those
    (and, after compaction, in the compacted topics). The declared stage is not known here: "erased"
    says why the record exists; the customer is deactivated."""
    at = int(request["requested_at"])
    return {"customer_id": request["customer_id"], **REDACTED, "created_at": at, "updated_at": at,
            "lifecycle_stage": "erased", "is_active": False}


def publish(settings: ForgetSettings, record: dict[str, Any]) -> None:
    """The request on the erasure topic and the redacted profile on the profile topic, each acknowledged
    by every in-sync replica, or Unreachable."""
    topic = settings.topic(topics.CUSTOMER_ERASURE)
    profile_topic = settings.topic(topics.CUSTOMER_PROFILE)
    where = f"Kafka at {settings.bootstrap_servers} ({settings.env_name('bootstrap_servers')})"
    # Metadata first: an unreachable broker or a missing topic is named in seconds, not after the
    # producer's delivery timeout (and a missing topic is not auto-created under a typo'd prefix).
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers,
                         "socket.connection.setup.timeout.ms": 5000, "logger": _QUIET})
    for name in (topic.name, profile_topic.name):
        topic_partitions(admin, name, where, Unreachable)
    try:
        registry = serde.registry_client(settings.schema_registry_url)
        data = serde.TopicSerde(registry, topic).serialize(record)
        profile = serde.TopicSerde(registry, profile_topic).serialize(redacted_profile(record))
    except Exception as exc:  # noqa: BLE001 - the registry client's transport errors
        raise Unreachable(f"Schema Registry at {settings.schema_registry_url} "
                          f"({settings.env_name('schema_registry_url')}): {one_line(exc, 200)}") from None
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "acks": "all", "enable.idempotence": True,
                         "partitioner": LIBRDKAFKA_PARTITIONER,  # the profile topic is joined by ksqlDB
                         "socket.connection.setup.timeout.ms": 5000, "message.timeout.ms": 15000, "logger": _QUIET})
    errors: list[str] = []
    # The request first: a reader that sees the redacted profile can already find why it was sent.
    for name, value in ((topic.name, data), (profile_topic.name, profile)):
        producer.produce(name, key=record["customer_id"].encode(), value=value,
                         on_delivery=lambda err, _msg: errors.append(str(err)) if err is not None else None)
    if producer.flush(20) != 0 or errors:
        raise Unreachable(f"the request could not be published to {topic.name} on {where}: "
                          f"{errors[0] if errors else 'not acknowledged in 20 s'}")
