"""``python -m forget.check <customer_id>``: after an erasure, look for the customer where the web UI and
ksqlDB keep it (the last step of ``make forget``; the Delta side is the erasure job's own report).

- Redis (the web UI's cache): the customer's hash holds only the feeder's ``_erased`` marker, no other key
  names the id, and no index, search or segment entry lists it.
- ksqlDB's consolidated view (its newest record on dom.customer.consolidated.v1, which is what the
  compacted topic keeps): the personal fields are the redacted profile's (empty names and e-mail, no
  phone). ksqlDB writes that record once it has read the redacted profile: the check waits for it.

Exit 0 when both are clean; 1 with one line per trace found; 2 with one line when a store cannot be read.
The original values are not known here (they are gone): the check looks at where they were, not for them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import time
import uuid
from typing import Any

import redis
from confluent_kafka import Consumer, TopicPartition

from common import settings as s
from common.errors import one_line
from common.kafka import topic_partitions
from common.settings import ConfigError
from forget.request import _QUIET, REDACTED
from forget.settings import ForgetSettings
from schemas import topics
from schemas.ids import valid_customer_id
from schemas.partitioning import partition_for_key
from webapp import cache
from webapp.settings import WebSettings, _secret

USAGE = "usage: python -m forget.check <customer_id>"


@dataclasses.dataclass(frozen=True)
class CheckSettings(ForgetSettings):
    redis_url: str = s.same_as(WebSettings, "redis_url")
    redis_password: str = _secret(s.same_as(WebSettings, "redis_password"))
    view_wait_s: float = s.env("FORGET_CHECK_WAIT_S", 60.0, s.non_negative_float,
                               "seconds >= 0 (how long to wait for ksqlDB's redacted record)")


class Unreadable(RuntimeError):
    """A store could not be read; ``str()`` is the one line printed."""


def redis_traces(client: redis.Redis, customer_id: str) -> list[str]:
    """What the cache still holds of the customer: [] once the feeder has erased it."""
    found = []
    own = cache.customer_key(customer_id)
    fields = set(client.hkeys(own))
    if cache.ERASED not in fields:
        found.append(f"redis: {own} has no {cache.ERASED} marker (the feeder has not read the request)")
    if fields - {cache.ERASED}:
        found.append(f"redis: {own} still holds {', '.join(sorted(fields - {cache.ERASED}))}")
    for key in client.scan_iter(count=1000):
        if key == own:
            continue
        if customer_id in key:
            found.append(f"redis: key {key} names the customer")
            continue
        kind = client.type(key)
        members: list[str] = []
        if kind == "zset":
            members = client.zrange(key, 0, -1)
        elif kind == "set":
            members = list(client.smembers(key))
        elif kind == "hash" and not key.startswith("customer:"):
            members = list(client.hkeys(key))
        if any(customer_id == cache.member_id(m) or customer_id in m for m in members):
            found.append(f"redis: {key} ({kind}) lists the customer")
    return found


@dataclasses.dataclass(frozen=True)
class ViewRecord:
    value: dict[str, Any]
    at_ms: int  # the Kafka timestamp ksqlDB gave it


def newest_view_record(settings: CheckSettings, customer_id: str) -> ViewRecord | None:
    """The newest record of the customer on ksqlDB's consolidated view topic (None: there is none)."""
    topic = settings.topic(topics.CUSTOMER_CONSOLIDATED).name
    where = f"Kafka at {settings.bootstrap_servers} ({settings.env_name('bootstrap_servers')})"
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"forget-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "socket.connection.setup.timeout.ms": 5000, "logger": _QUIET})
    try:
        partitions = topic_partitions(consumer, topic, where, Unreadable)
        partition = partition_for_key(customer_id, len(partitions))  # ksqlDB places keys with murmur2
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high <= low:
            return None
        consumer.assign([TopicPartition(topic, partition, low)])
        newest = None
        deadline = time.monotonic() + 60
        while consumer.position([TopicPartition(topic, partition)])[0].offset < high:
            if time.monotonic() > deadline:
                raise Unreadable(f"reading {topic} from {where} took longer than 60s")
            for msg in consumer.consume(1000, 1.0):
                if msg.error() is None and msg.key() == customer_id.encode():
                    newest = None if msg.value() is None else ViewRecord(json.loads(msg.value()), msg.timestamp()[1])
        return newest
    finally:
        consumer.close()


def view_traces(record: ViewRecord | None) -> list[str]:
    """What ksqlDB's newest view record still shows of the customer: [] once it carries the redaction."""
    if record is None:
        return []
    return [f"ksqlDB view: {field} is not redacted yet" for field, value in REDACTED.items()
            if record.value.get(field) != value]


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def report(customer_id: str, marker: str | None, view: ViewRecord | None, view_topic: str) -> list[str]:
    """Where the check looked and what it found, store by store, with when each was erased."""
    when = f"request of {_utc(int(marker))}" if marker and marker.isdigit() else "request time unknown"
    return [f"forget.check: customer {customer_id}: erased everywhere it looked",
            f"  web UI cache (Redis): only the erasure marker ({when})",
            f"  ksqlDB view ({view_topic}): " + ("no record" if view is None else
                                                 f"the redacted profile, written {_utc(view.at_ms)}")]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"forget.check: {USAGE}", file=sys.stderr)
        return 2
    customer_id = args[0]
    if not valid_customer_id(customer_id):
        print(f"forget.check: not a customer id: {customer_id!r}", file=sys.stderr)
        return 2
    try:
        settings = CheckSettings.from_env()
        client = cache.connect(settings.redis_url, settings.redis_password, name="forget-check")
        deadline = time.monotonic() + settings.view_wait_s
        while True:
            try:
                found = redis_traces(client, customer_id)
            except redis.RedisError as exc:
                raise Unreadable(f"Redis at {settings.redis_url} ({settings.env_name('redis_url')}): "
                                 f"{one_line(exc, 200)}") from None
            view = newest_view_record(settings, customer_id)
            found += view_traces(view)
            if not found or time.monotonic() >= deadline:
                break
            time.sleep(2)  # the feeder and ksqlDB each need a moment for the request
    except (ConfigError, Unreadable) as exc:
        print(f"forget.check: {exc}", file=sys.stderr)
        return 2
    for line in found:
        print(f"forget.check: customer {customer_id}: {line}", flush=True)
    if found:
        return 1
    marker = client.hget(cache.customer_key(customer_id), cache.ERASED)
    for line in report(customer_id, marker, view, settings.topic(topics.CUSTOMER_CONSOLIDATED).name):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
