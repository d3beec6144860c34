"""Publish Avro events to Redpanda: through the HTTP Proxy (``rest``, the cluster default) or Kafka.

Both transports serialize with the project serde (``schemas.serde.TopicSerde``: Confluent framing,
the schema registered or looked up under ``<topic>-value`` in the Schema Registry), place every keyed
record where a Java producer would (``schemas.partitioning``: murmur2, so ksqlDB's joins see an order
in its customer's partition), count only the records the broker ACKNOWLEDGED, retry transient
failures (HTTP 5xx/408/429, timeouts, connection errors, broker unavailable) with exponential backoff
and jitter, and raise :class:`PublishError`, a one-line message naming the endpoint, the setting that
points there, the topic and the reason, on a permanent failure or when the retries are spent. Both
check that the topic exists before anything is registered in the Schema Registry.

REST delivery is at-least-once: a timed-out request the proxy had in fact written is sent again and
written twice; consumers dedup on the record ids (see seed/README.md).

A publisher may be shared between threads (the web UI does).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import requests
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas import serde
from schemas.partitioning import LIBRDKAFKA_PARTITIONER, partition_for_key
from schemas.topics import Topic
from seed.settings import PublisherSettings

__all__ = [
    "KafkaPublisher",
    "PublishError",
    "PublishStats",
    "Publisher",
    "RestPublisher",
    "make_publisher",
]

Record = tuple[str, Mapping[str, Any]]

BINARY_V2 = "application/vnd.kafka.binary.v2+json"
PROXY_ACCEPT = "application/vnd.kafka.v2+json, application/json"
RETRIABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
# Kafka error codes a per-record reply may carry that are worth retrying (leadership moves,
# timeouts, replicas catching up, a topic's partitions still being created).
RETRIABLE_KAFKA_CODES = frozenset({3, 5, 6, 7, 13, 14, 15, 19, 20, 56})
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 10.0
KAFKA_LOGGER = logging.getLogger("seed.kafka")


class PublishError(RuntimeError):
    """A permanent publish failure, or transient ones that outlasted the retries.

    ``str(err)`` is one line naming the endpoint, the topic and the reason. ``acknowledged`` counts the
    records of the failed ``publish`` call that had been acknowledged before it failed.
    """

    def __init__(self, endpoint: str, topic: str, reason: str, *, acknowledged: int = 0):
        self.endpoint = endpoint
        self.topic = topic
        self.reason = " ".join(str(reason).split())  # one line
        self.acknowledged = acknowledged
        super().__init__(f"publish to {topic} via {endpoint} failed: {self.reason}")


class Publisher(Protocol):
    def publish(self, topic: Topic, records: Sequence[tuple[str, Mapping[str, Any]]]) -> int:
        """Send ``(customer_id, value)`` records to ``topic``; return how many were acknowledged.

        Raises PublishError on a permanent failure, after retrying transient ones.
        """
        ...

    def close(self) -> None: ...


@dataclasses.dataclass
class PublishStats:
    """Running totals of a publisher (for progress output)."""

    acknowledged: int = 0
    failed: int = 0  # records given up on
    retries: int = 0  # transient errors retried


def make_publisher(settings: PublisherSettings) -> Publisher:
    if settings.transport == "rest":
        return RestPublisher(settings)
    if settings.transport == "kafka":
        return KafkaPublisher(settings)
    raise ValueError(f"unknown transport {settings.transport!r}: expected rest or kafka")


def backoff_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): exponential, capped, with 50-100% jitter."""
    rng = rng or random.Random()
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * (0.5 + rng.random() / 2)


def _kafka_code_name(code: int) -> str:
    """``6 NOT_LEADER_FOR_PARTITION``; a code librdkafka does not know (the proxy's own 5xxxx codes)
    stays a bare number rather than librdkafka's ``ERR_50003?``."""
    try:
        name = KafkaError(code).name()
    except Exception:  # not an int librdkafka accepts
        return str(code)
    return str(code) if name.endswith("?") else f"{code} {name}"


class _Serializers:
    """One TopicSerde per topic on one registry client; registry failures become PublishError."""

    def __init__(self, settings: PublisherSettings, client: SchemaRegistryClient | None = None):
        self.url = settings.schema_registry_url
        self.endpoint = f"schema registry {self.url} ({PublisherSettings.env_name('schema_registry_url')})"
        self._client = client or serde.registry_client(
            settings.schema_registry_url,
            **{
                "timeout": settings.request_timeout_s,
                "max.retries": settings.max_retries,
                "retries.wait.ms": int(BACKOFF_BASE_S * 1000),
                "retries.max.wait.ms": int(BACKOFF_CAP_S * 1000),
            },
        )
        self._serdes: dict[str, serde.TopicSerde] = {}
        self._lock = threading.Lock()

    def _serde(self, topic: Topic) -> serde.TopicSerde:
        found = self._serdes.get(topic.name)
        if found is None:
            with self._lock:
                found = self._serdes.get(topic.name)
                if found is None:
                    found = self._serdes[topic.name] = serde.TopicSerde(self._client, topic)
        return found

    def prepare(self, topic: Topic) -> serde.TopicSerde:
        """The topic's serde (no registry request yet); PublishError for a topic that is not Avro."""
        try:
            return self._serde(topic)
        except ValueError as exc:  # not an Avro topic
            raise PublishError(self.url, topic.name, str(exc)) from None

    def serialize_all(self, topic: Topic, records: Sequence[Record]) -> list[tuple[bytes, bytes]]:
        target = self.prepare(topic)
        out: list[tuple[bytes, bytes]] = []
        for key, value in records:
            try:
                data = target.serialize(value)
            except SchemaRegistryError as exc:
                raise PublishError(self.endpoint, topic.name, _registry_reason(topic, exc)) from None
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                reason = f"record for key {key!r} does not conform to {topic.schema_file}"
                raise PublishError(self.endpoint, topic.name, f"{reason}: {type(exc).__name__}: {exc}") from None
            except Exception as exc:  # httpx transport errors (connect refused, DNS, timeout) after retries
                reason = f"registry unreachable: {type(exc).__name__}: {exc}"
                raise PublishError(self.endpoint, topic.name, reason) from None
            out.append((key.encode("utf-8"), data))
        return out


def _registry_reason(topic: Topic, exc: SchemaRegistryError) -> str:
    status = exc.http_status_code
    if status == 409:
        what = f"schema rejected as incompatible with the registered versions of {topic.subject}"
    elif status == 422:
        what = f"schema rejected as invalid under {topic.subject}"
    elif status in RETRIABLE_HTTP:
        what = "registry kept failing"
    elif status in (404, 405) and exc.error_code not in (40401, 40403):
        # A 404 that is not one of the registry's own "not found" codes: something else answers there.
        what = "no Schema Registry API at this address"
    else:
        what = "registry refused the request"
    return f"{what} (HTTP {status}, error_code {exc.error_code}: {exc.error_message})"


# ---- REST: Redpanda HTTP Proxy ----------------------------------------------------------------------


class RestPublisher:
    """POST /topics/<topic> on the HTTP Proxy, binary embedded format, batches of ``batch_size``, each
    record with an explicit ``partition`` (murmur2 of its key, as a Java producer would choose)."""

    def __init__(
        self,
        settings: PublisherSettings,
        *,
        registry: SchemaRegistryClient | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.endpoint = f"HTTP proxy {settings.rest_proxy_url} ({PublisherSettings.env_name('rest_proxy_url')})"
        self.stats = PublishStats()
        self._serializers = _Serializers(settings, registry)
        self._session = session or requests.Session()
        self._sleep = sleep
        self._jitter = random.Random()
        self._stats_lock = threading.Lock()
        self._partitions: dict[str, int] = {}  # topic -> partition count, once the topic was seen

    def publish(self, topic: Topic, records: Sequence[Record]) -> int:
        if not records:
            return 0
        self._serializers.prepare(topic)
        # Before anything is registered: a missing topic is one clear line, not a schema left behind
        # under its subject and a minute-long block in the proxy.
        partitions = self.partitions(topic)
        encoded = self._serializers.serialize_all(topic, records)
        acked = 0
        size = self.settings.batch_size
        for start in range(0, len(encoded), size):
            batch = [serde.proxy_record(k, v, partition_for_key(k, partitions))
                     for k, v in encoded[start:start + size]]
            try:
                acked += self._send(topic, batch)
            except PublishError as exc:
                exc.acknowledged += acked
                self._count(failed=len(encoded) - exc.acknowledged)
                raise
        return acked

    def partitions(self, topic: Topic) -> int:
        """The partition count records of ``topic`` are placed over; PublishError if the topic is missing.

        Existence comes from the proxy (``GET /topics``, which answers at once; a produce to a missing
        topic blocks for the proxy's max.block.ms, 60 s, before failing). The count cannot: Redpanda's
        HTTP Proxy has no per-topic metadata route (its v2 routes are GET /brokers, GET /topics,
        POST /topics/{t}, GET /topics/{t}/partitions/{p}/records, the consumer routes and
        /status/ready; pandaproxy/api/api-doc/rest.json), so it is ``Topic.partitions`` from the topic
        registry, which the chart's topics Job creates every source topic with (chart values equal
        schemas/topics.py, tests/manifests/test_chart_consistency.py). Cached per topic."""
        count = self._partitions.get(topic.name)
        if count is None:
            if topic.name not in self._list_topics(topic):
                raise PublishError(self.endpoint, topic.name, self._missing(topic))
            count = self._partitions[topic.name] = topic.partitions
        return count

    def close(self) -> None:
        self._session.close()

    def _count(self, acknowledged: int = 0, failed: int = 0, retries: int = 0) -> None:
        with self._stats_lock:
            self.stats.acknowledged += acknowledged
            self.stats.failed += failed
            self.stats.retries += retries

    def _missing(self, topic: Topic) -> str:
        return (f"topic {topic.name} does not exist (not in GET {self.settings.rest_proxy_url}/topics; "
                "the chart's topics Job creates it)")

    def _list_topics(self, topic: Topic, *, retries: int | None = None) -> set[str]:
        """``GET /topics``, retrying transient failures like a produce request."""
        url = f"{self.settings.rest_proxy_url}/topics"
        timeout = self.settings.request_timeout_s
        retries = self.settings.max_retries if retries is None else retries
        attempt = 0
        while True:
            reason: str
            try:
                response = self._session.get(url, headers={"Accept": PROXY_ACCEPT}, timeout=(timeout, timeout))
            except requests.Timeout:
                reason = f"GET /topics: no reply within {timeout:g}s"
            except requests.ConnectionError as exc:
                reason = f"cannot connect ({_root_cause(exc)})"
            except requests.RequestException as exc:
                raise PublishError(self.endpoint, topic.name, f"GET /topics failed: {exc}") from None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    try:
                        names = response.json()
                    except ValueError:
                        names = None
                    if not isinstance(names, list):
                        raise PublishError(self.endpoint, topic.name, "GET /topics did not answer a list of "
                                           f"topic names: {response.text[:120]!r} (is this the HTTP Proxy?)")
                    return {str(n) for n in names}
                if status not in RETRIABLE_HTTP:
                    raise PublishError(self.endpoint, topic.name,
                                       f"GET /topics answered HTTP {status} {_error_text(response)} "
                                       "(is this the HTTP Proxy?)")
                reason = f"GET /topics: HTTP {status} {_error_text(response)}"
            attempt += 1
            if attempt > retries:
                raise PublishError(self.endpoint, topic.name, f"{reason}; gave up after {retries} retries")
            self._count(retries=1)
            self._sleep(backoff_delay(attempt, self._jitter))

    def _still_exists(self, topic: Topic) -> bool:
        """After a timed-out produce: is the topic still there? (A produce to a topic deleted meanwhile
        blocks in the proxy until its max.block.ms.) True when the proxy cannot tell."""
        try:
            return topic.name in self._list_topics(topic, retries=0)
        except PublishError:
            return True

    def _send(self, topic: Topic, pending: list[dict[str, Any]]) -> int:
        """Send one batch, retrying transient failures (whole request) and retriable per-record errors
        (only those records). Returns the acknowledged count; raises PublishError."""
        url = f"{self.settings.rest_proxy_url}/topics/{topic.name}"
        headers = {"Content-Type": BINARY_V2, "Accept": PROXY_ACCEPT}
        timeout = self.settings.request_timeout_s
        acked = 0
        attempt = 0
        while True:
            reason: str
            try:
                response = self._session.post(
                    url, data=json.dumps({"records": pending}), headers=headers, timeout=(timeout, timeout)
                )
            except requests.Timeout:
                if not self._still_exists(topic):
                    self._partitions.pop(topic.name, None)
                    raise PublishError(self.endpoint, topic.name, self._missing(topic), acknowledged=acked) \
                        from None
                reason = f"no reply within {timeout:g}s"
            except requests.ConnectionError as exc:
                reason = f"cannot connect ({_root_cause(exc)})"
            except requests.RequestException as exc:
                raise PublishError(self.endpoint, topic.name, f"request failed: {exc}", acknowledged=acked) \
                    from None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    ok, retry, permanent = self._check_offsets(topic, pending, response)
                    acked += ok
                    self._count(acknowledged=ok)
                    if permanent:
                        raise PublishError(self.endpoint, topic.name, permanent, acknowledged=acked)
                    if not retry:
                        return acked
                    pending = [pending[i] for i, _ in retry]
                    reason = f"{len(retry)} record(s) failed, record {retry[0][0]} with {retry[0][1]}"
                elif status in RETRIABLE_HTTP:
                    reason = f"HTTP {status} {_error_text(response)}"
                else:
                    reason = _http_reason(topic, response)
                    raise PublishError(self.endpoint, topic.name, reason, acknowledged=acked)
            attempt += 1
            if attempt > self.settings.max_retries:
                raise PublishError(
                    self.endpoint, topic.name, f"{reason}; gave up after {self.settings.max_retries} retries",
                    acknowledged=acked,
                )
            self._count(retries=1)
            self._sleep(backoff_delay(attempt, self._jitter))

    def _check_offsets(
        self, topic: Topic, pending: list[dict[str, Any]], response: requests.Response
    ) -> tuple[int, list[tuple[int, str]], str | None]:
        """(acknowledged, [(index, what failed)] retriable, permanent failure reason or None)."""
        try:
            offsets = response.json()["offsets"]
        except (ValueError, KeyError, TypeError):
            return 0, [], f"unreadable proxy reply (HTTP {response.status_code}): {response.text[:200]!r}"
        if not isinstance(offsets, list) or len(offsets) != len(pending):
            count = len(offsets) if isinstance(offsets, list) else "no"
            return 0, [], f"proxy reply has {count} offsets for {len(pending)} records"
        ok = 0
        retry: list[tuple[int, str]] = []
        permanent: str | None = None
        for index, entry in enumerate(offsets):
            code = entry.get("error_code") if isinstance(entry, dict) else None
            if not code:
                ok += 1
                continue
            # The proxy's own words (e.g. 50003 "Topic … not present in metadata after 60000 ms.").
            text = entry.get("error") or entry.get("message")
            what = f"error_code {_kafka_code_name(code)}" + (f": {text}" if text else "")
            if code in RETRIABLE_KAFKA_CODES:
                retry.append((index, what))
            elif permanent is None:
                permanent = f"record {index} rejected with {what}"
        return ok, retry, permanent


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return text.split("] ")[-1] if "] " in text else text


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        return f"error_code {body.get('error_code')}: {body.get('message')}"
    except ValueError:
        return response.text[:200]


def _http_reason(topic: Topic, response: requests.Response) -> str:
    status = response.status_code
    detail = _error_text(response)
    if status == 404 and "40401" in detail:
        return f"topic {topic.name} does not exist (HTTP 404, {detail})"
    if status == 415:
        return f"content type {BINARY_V2} rejected (HTTP 415, {detail})"
    return f"HTTP {status}, {detail}"


# ---- Kafka: confluent-kafka producer -------------------------------------------------------------------


class _Delivery:
    """Delivery reports of one publish call."""

    __slots__ = ("acked", "failed", "first_error")

    def __init__(self) -> None:
        self.acked = 0
        self.failed = 0
        self.first_error: KafkaError | None = None

    def __call__(self, err: KafkaError | None, _msg: Any) -> None:
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = err


class KafkaPublisher:
    """Idempotent producer (enable.idempotence=true, acks=all, Java-compatible murmur2 partitioner);
    counts delivery-report acks."""

    def __init__(
        self,
        settings: PublisherSettings,
        *,
        registry: SchemaRegistryClient | None = None,
        producer_conf: Mapping[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.endpoint = f"Kafka {settings.bootstrap_servers} ({PublisherSettings.env_name('bootstrap_servers')})"
        self.stats = PublishStats()
        self._serializers = _Serializers(settings, registry)
        timeout_ms = int(settings.request_timeout_s * 1000)
        # librdkafka retries internally (idempotently) until the delivery timeout: give it the time
        # the settings allow for max_retries retries of a request.
        self.delivery_timeout_s = settings.request_timeout_s * (settings.max_retries + 1)
        conf: dict[str, Any] = {
            "bootstrap.servers": settings.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "compression.type": "lz4",
            "request.timeout.ms": timeout_ms,
            "message.timeout.ms": int(self.delivery_timeout_s * 1000),
            "socket.connection.setup.timeout.ms": timeout_ms,
            "retry.backoff.ms": int(BACKOFF_BASE_S * 1000),
            "retry.backoff.max.ms": int(BACKOFF_CAP_S * 1000),
            "client.id": "marketing-engine-seed",
            # Keys placed as Java producers and ksqlDB place them (librdkafka's default is CRC32).
            "partitioner": LIBRDKAFKA_PARTITIONER,
            # librdkafka's own log lines go through logging (not straight to stderr), so a failure is
            # the one PublishError line; LOG_LEVEL=DEBUG shows them.
            "logger": KAFKA_LOGGER,
            # Topics are created by the platform with their partition counts; never by a metadata probe.
            "allow.auto.create.topics": False,
        }
        conf.update(producer_conf or {})
        self.producer_conf = conf
        self._producer = Producer(conf)
        self._sleep = sleep
        self._jitter = random.Random()
        self._known_topics: set[str] = set()
        self._lock = threading.Lock()

    def _check_topic(self, topic: Topic) -> None:
        """Fail fast (after retries) when the brokers are unreachable or the topic does not exist."""
        if topic.name in self._known_topics:
            return
        attempt = 0
        while True:
            try:
                meta = self._producer.list_topics(topic.name, timeout=self.settings.request_timeout_s)
                error = meta.topics[topic.name].error if topic.name in meta.topics else None
                if error is None:
                    self._known_topics.add(topic.name)
                    return
                if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise PublishError(self.endpoint, topic.name, f"topic {topic.name} does not exist")
                reason = f"topic metadata error {error.name()}: {error.str()}"
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                reason = f"brokers unreachable ({err.name()}: {err.str()})" if err else f"metadata: {exc}"
            attempt += 1
            if attempt > self.settings.max_retries:
                reason = f"{reason}; gave up after {self.settings.max_retries} retries"
                raise PublishError(self.endpoint, topic.name, reason)
            with self._lock:
                self.stats.retries += 1
            self._sleep(backoff_delay(attempt, self._jitter))

    def publish(self, topic: Topic, records: Sequence[Record]) -> int:
        if not records:
            return 0
        self._serializers.prepare(topic)
        self._check_topic(topic)
        encoded = self._serializers.serialize_all(topic, records)
        delivery = _Delivery()
        producer = self._producer
        name = topic.name
        for i, (key, value) in enumerate(encoded):
            while True:
                try:
                    producer.produce(name, value=value, key=key, on_delivery=delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.05)
                except KafkaException as exc:
                    raise self._fail(topic, delivery, len(encoded), f"produce failed: {exc}") from None
            if i % 1000 == 999:
                producer.poll(0)
        remaining = producer.flush(self.delivery_timeout_s + 5)
        if delivery.first_error is not None:
            err = delivery.first_error
            raise self._fail(topic, delivery, len(encoded),
                             f"{delivery.failed} record(s) not delivered: {err.name()}: {err.str()}")
        if remaining or delivery.acked < len(encoded):
            raise self._fail(topic, delivery, len(encoded),
                             f"{len(encoded) - delivery.acked} record(s) not acknowledged within "
                             f"{self.delivery_timeout_s + 5:g}s")
        with self._lock:
            self.stats.acknowledged += delivery.acked
        return delivery.acked

    def _fail(self, topic: Topic, delivery: _Delivery, total: int, reason: str) -> PublishError:
        with self._lock:
            self.stats.acknowledged += delivery.acked
            self.stats.failed += total - delivery.acked
        return PublishError(self.endpoint, topic.name, reason, acknowledged=delivery.acked)

    def close(self) -> None:
        self._producer.flush(self.settings.request_timeout_s)
        close = getattr(self._producer, "close", None)
        if close is not None:
            close()
