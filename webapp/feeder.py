"""The feeder: Kafka -> Redis, the only process that writes the web UI's cache.

Run: ``python -m webapp.feeder`` (the chart runs it as its own Deployment, one replica, Recreate).

What it reads (``webapp.records``): the customer view's topics ``dom.customer.consolidated.v1``
(JSON, contract ``schemas/json/customer_consolidated.json``), ``dom.propensity.score.v1`` and
``dom.segment.materialized.v1`` (Avro), for the customer page's history
``dom.customer.order.enriched.v1`` (JSON) and ``dom.activation.delivery.status.v1`` (Avro), and the
consistency check's reports ``dom.pipeline.consistency.v1`` (Avro; the newest is cached in
``insights:consistency`` and mirrored in the status for ``make status``), and the requests to forget a
customer ``dom.customer.erasure.v1`` (Avro, ``python -m forget``: the customer is erased from the cache
and nothing of it is cached again, ``webapp.cache.apply``). A record
that does not match its contract is skipped (an unexpected field alone is only noted), counted per
topic and kind, and each kind is logged once.

One writer: the feeder holds a lease in Redis (``feeder:lease``, renewed every few seconds, expiring
if it stops) before it reads anything; a second feeder waits on standby. Every batch is one
transaction that fails when the lease is no longer this feeder's (``webapp.cache.CacheWriter``).

Positions: no consumer-group membership. The feeder assigns itself every partition of the six
topics at the offsets stored in Redis with the data (the beginning for a new or wiped cache), writes
each batch (data, indexes, insight counters, next offsets, version) in one transaction, THEN commits
the same offsets to Kafka under ``CONSUMER_GROUP`` (what lag monitoring and Kafka UI show). A crash
between the two loses nothing and applies nothing twice: a restart reads the positions from Redis.
When Redis, Kafka or the registry is unreachable the feeder waits, re-reads its positions and goes on.

Status: a typed object (``webapp.status.FeederStatus``) in ``feeder:status``, rewritten every
STATUS_INTERVAL_S and after batches: per topic lag, records, newest record time, mismatches; the
dead-letter topic's size; Kafka, Redis and registry health; per Spark query its newest committed batch
(commit time, newest event time, rows), read from the status topic the Spark jobs publish after each
Delta commit (``webapp.layers``; the web UI never reads Delta). Probes: ``/healthz`` (the loop turns)
and ``/readyz`` (holding the lease, Redis and Kafka reachable) on FEEDER_HEALTH_PORT.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from common.errors import one_line
from common.settings import ConfigError
from schemas import serde, topics
from webapp import cache as cache_mod
from webapp import records as rec
from webapp.cache import CacheWriter, EpochMismatch, LeaseLost, RedisError
from webapp.feeder_settings import FeederSettings
from webapp.layers import LayerFeed
from webapp.settings import WebSettings
from webapp.status import (
    RESTARTING,
    RUNNING,
    STANDBY,
    STARTING,
    STOPPED,
    WAITING_REDIS,
    FeederStatus,
    TopicStatus,
)

log = logging.getLogger("webapp.feeder")

_DIGITS = re.compile(r"\d+")


class _Throttle(logging.Filter):
    """Lets the same message through at most once per ``interval`` seconds (an unreachable broker
    would otherwise log every reconnect attempt)."""

    def __init__(self, interval: float = 60.0):
        super().__init__()
        self.interval = interval
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = _DIGITS.sub("#", record.getMessage()[:300])  # "after 0ms" and "after 1ms" are the same news
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


# librdkafka's own log lines and our Kafka error reports, throttled
kafka_log = logging.getLogger("webapp.kafka")
kafka_log.addFilter(_Throttle())

POLL_TIMEOUT_S = 0.5
STATS_INTERVAL_MS = 2000
STATS_STALE_S = 15.0
STATUS_INTERVAL_S = 2.0
EPOCH_CHECK_S = 2.0
METADATA_CHECK_S = 10.0
DEAD_LETTER_CHECK_S = 10.0
LAYERS_POLL_S = 1.0
LEASE_TTL_MS = 15_000
LEASE_RENEW_S = 4.0
STANDBY_POLL_S = 2.0
LIVENESS_S = 60.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
_KAFKA_DOWN_CODES = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE,
                     KafkaError._AUTHENTICATION}
FEED_NAMES = [t.name for t in rec.FEED_TOPICS]


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Standby(Exception):
    """Another feeder holds the lease."""


class Feeder:
    def __init__(self, settings: FeederSettings | WebSettings, *, consumer_conf: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time, instance: str | None = None):
        self.settings = settings
        self._extra_conf = dict(consumer_conf or {})
        self._clock = clock
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards self.status against the health server's threads
        self.status = FeederStatus(self.instance, pid=os.getpid(), started_ms=_now_ms(),
                                   group=settings.consumer_group,
                                   topics={name: TopicStatus(name) for name in FEED_NAMES})
        self.loop_at = time.monotonic()  # liveness: the loop's last turn
        self._reset_pending = settings.cache_reset_on_start
        self._logged_kinds: set[tuple[str, str]] = set()
        # per run
        self._writer: CacheWriter | None = None
        self._decoder: rec.Decoder | None = None
        self._epoch: str | None = None
        self._written: dict[tuple[str, int], int] = {}  # next offset known to be in the cache
        self._missing_topics: list[str] = []
        self._last_stats_at: float | None = None
        self._due: dict[str, float] = {}

    # ---- lifecycle ------------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Until stop(): run, and rebuild everything after any failure (logged, counted, reported)."""
        backoff = BACKOFF_FIRST_S
        while not self._stop.is_set():
            started = self.loop_at = time.monotonic()
            try:
                self._run()
            except _Standby:
                self._set(state=STANDBY)
                self._stop.wait(STANDBY_POLL_S)
                continue
            except Exception as exc:  # the loop must never die silently
                log.exception("feeder failed; restarting in %.0fs", backoff)
                self._error(f"{type(exc).__name__}: {exc}")
                self._set(state=RESTARTING, restarts=self.status.restarts + 1)
                self._publish_status()
                if time.monotonic() - started > 60:
                    backoff = BACKOFF_FIRST_S
                self._stop.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
        self._set(state=STOPPED)
        self._publish_status()

    # ---- status ---------------------------------------------------------------------------------------------
    def _set(self, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self.status, name, value)

    def _error(self, text: str) -> None:
        self._set(last_error=one_line(text), last_error_ms=_now_ms())

    def snapshot(self) -> FeederStatus:
        with self._lock:
            status = FeederStatus.from_json(self.status.to_json())
        assert status is not None
        if status.kafka_ok and self._last_stats_at is not None and self._clock() - self._last_stats_at > STATS_STALE_S:
            status.kafka_ok, status.kafka_reason = None, f"no client statistics for {STATS_STALE_S:g}s"
        return status

    def _publish_status(self) -> None:
        """Write the status to Redis (only while holding the lease: the one writer)."""
        writer = self._writer
        self._set(heartbeat_ms=_now_ms())
        if writer is None or self.status.state == STANDBY:
            return
        with contextlib.suppress(RedisError):  # the loop notices and reports Redis down; the status waits
            writer.write_status(self.snapshot())

    def ready(self) -> tuple[bool, list[str]]:
        status = self.snapshot()
        reasons = []
        if time.monotonic() - self.loop_at > LIVENESS_S:
            reasons.append(f"the feeder loop has not turned for {time.monotonic() - self.loop_at:.0f}s")
        if status.state != RUNNING:
            reasons.append(f"the feeder is {status.state}")
        if status.redis_ok is False:
            reasons.append("Redis is unreachable")
        if status.kafka_ok is not True:
            reasons.append(f"Kafka not reachable: {status.kafka_reason}")
        return not reasons, reasons

    def alive(self) -> bool:
        return time.monotonic() - self.loop_at <= LIVENESS_S

    # ---- one run ----------------------------------------------------------------------------------------------
    def _every(self, name: str, interval: float) -> bool:
        now = time.monotonic()
        if now >= self._due.get(name, 0.0):
            self._due[name] = now + interval
            return True
        return False

    def _run(self) -> None:
        self._due = {}
        self._set(state=STARTING)
        writer = self._writer = CacheWriter(
            cache_mod.connect(self.settings.redis_url, self.settings.redis_password, timeout=5.0, name="webapp-feeder"),
            self.instance, history_max=self.settings.history_max, lease_ttl_ms=LEASE_TTL_MS)
        try:
            if not self._with_redis(writer.acquire_lease):
                raise _Standby()
            registry = serde.registry_client(self.settings.schema_registry_url)
            self._decoder = rec.Decoder(registry)
            consumer = Consumer(self._consumer_conf())
            layers = LayerFeed(self._layers_conf(), registry)
            try:
                self._claim(consumer)
                self._set(state=RUNNING)
                log.info("feeder %s holds the write lease; feeding the cache from %s", self.instance,
                         ", ".join(FEED_NAMES))
                while not self._stop.is_set():
                    self.loop_at = time.monotonic()
                    if not self._housekeeping(consumer):
                        continue
                    if self._every("layers", LAYERS_POLL_S):
                        self._poll_layers(layers)
                    messages = consumer.consume(self.settings.feeder_batch_max, POLL_TIMEOUT_S)
                    if messages:
                        self._handle(consumer, messages)
                    if self._every("status", STATUS_INTERVAL_S):
                        self._publish_status()
            finally:
                layers.close()
                try:
                    consumer.close()
                except Exception:  # closing a consumer whose broker is gone must not mask the real error
                    log.warning("consumer close failed", exc_info=True)
        finally:
            if self._stop.is_set():
                self._set(state=STOPPED)
                self._publish_status()
                with contextlib.suppress(RedisError):
                    writer.release_lease()  # a successor need not wait for the lease to expire
            writer.redis.close()
            self._writer = None

    def _with_redis(self, call: Callable[[], Any]) -> Any:
        """Call ``call`` until Redis answers (or we are stopped), reporting the outage meanwhile."""
        while True:
            try:
                result = call()
            except RedisError as exc:
                self._redis_down(exc)
                if self._stop.wait(1.0):
                    raise _Standby() from None
                self.loop_at = time.monotonic()
                continue
            self._redis_up()
            return result

    def _redis_down(self, exc: BaseException) -> None:
        if self.status.redis_ok is not False:
            log.warning("redis unreachable, feeding paused until it is back: %s", one_line(exc))
        self._set(redis_ok=False, state=WAITING_REDIS)
        self._error(f"Redis unreachable: {exc}")

    def _redis_up(self) -> None:
        if self.status.redis_ok is False:
            log.info("redis is back: positions re-read from the cache, feeding again")
        self._set(redis_ok=True)
        if self.status.state == WAITING_REDIS:
            self._set(state=RUNNING)

    def _claim(self, consumer: Consumer) -> None:
        """Adopt the cache's epoch (resetting it first if asked or if its layout is old) and assign every
        partition at the offsets stored with the data."""
        writer = self._writer
        assert writer is not None
        if self._reset_pending:
            removed = self._with_redis(writer.reset)
            log.warning("cache reset on start: removed %d keys; rebuilding from the topics", removed)
            self._reset_pending = False
        self._epoch, created = self._with_redis(writer.claim)
        if created:
            self._set(cache_rebuilds=self.status.cache_rebuilds + 1)
            log.info("cache is empty (epoch %s): building it from the beginning of the topics", self._epoch)
        stats, mismatches = self._with_redis(writer.stored_stats)
        with self._lock:
            for name, t in self.status.topics.items():
                t.records = int(stats.get(f"records:{name}") or 0)
                t.last_event_ms = int(stats[f"last_event_ms:{name}"]) if stats.get(f"last_event_ms:{name}") else None
                t.last_written_ms = (int(stats[f"last_written_ms:{name}"])
                                     if stats.get(f"last_written_ms:{name}") else None)
                t.mismatches = {}
            for key, n in mismatches.items():
                topic, kind = key.split(cache_mod.SEP, 1)
                if topic in self.status.topics:
                    self.status.topics[topic].mismatches[kind] = int(n)
        self._set(consistency=self._with_redis(writer.stored_consistency))
        self._assign(consumer, rebuild=True)

    def _assign(self, consumer: Consumer, rebuild: bool = False) -> None:
        """Assign every partition of the feed topics (new ones too) at the positions in Redis."""
        writer = self._writer
        assert writer is not None
        try:
            meta = consumer.list_topics(timeout=5)
        except KafkaException as exc:
            self._set(kafka_ok=False, kafka_reason=one_line(exc))
            self._missing_topics = list(FEED_NAMES)
            return
        partitions = [(t, p) for t in FEED_NAMES if t in meta.topics and not meta.topics[t].error
                      for p in meta.topics[t].partitions]
        self._missing_topics = [t for t in FEED_NAMES if t not in meta.topics or meta.topics[t].error]
        if not rebuild and set(partitions) <= set(self._written):
            return
        stored = self._with_redis(lambda: writer.stored_offsets(partitions))
        self._written = {tp: stored.get(tp, 0) for tp in partitions}
        consumer.assign([TopicPartition(t, p, stored.get((t, p), OFFSET_BEGINNING)) for t, p in partitions])
        if self._missing_topics:
            log.info("topics not on the broker yet (checked again every %.0fs): %s", METADATA_CHECK_S,
                     ", ".join(self._missing_topics))

    def _rewind(self, consumer: Consumer) -> None:
        """Back to what the cache has (after a batch that was not written)."""
        consumer.assign([TopicPartition(t, p, o if o > 0 else OFFSET_BEGINNING) for (t, p), o in self._written.items()])

    def _housekeeping(self, consumer: Consumer) -> bool:
        """The lease, the epoch, new partitions, the dead letters. False: do not consume this turn."""
        writer = self._writer
        assert writer is not None
        try:
            if self._every("lease", LEASE_RENEW_S) and not writer.renew_lease():
                log.warning("lost the write lease to %s: standing by", writer.lease_holder() or "nobody")
                raise _Standby()
            if self._every("epoch", EPOCH_CHECK_S) and writer.epoch() != self._epoch:
                # Without traffic no write would notice that Redis restarted empty (or was reset).
                log.warning("cache epoch changed (%s -> %s): the cache was wiped or reset, rebuilding",
                            self._epoch, writer.epoch() or "none")
                if not writer.acquire_lease():
                    raise _Standby()
                self._claim(consumer)
        except RedisError as exc:
            self._redis_down(exc)
            self._due.pop("lease", None)
            self._due.pop("epoch", None)
            self._stop.wait(1.0)
            self.loop_at = time.monotonic()
            if self._every("status", STATUS_INTERVAL_S):
                self._set(heartbeat_ms=_now_ms())
            return False
        self._redis_up()
        if self._every("metadata", METADATA_CHECK_S) and self._missing_topics:
            self._assign(consumer)
        if self._every("dead-letters", DEAD_LETTER_CHECK_S):
            self._count_dead_letters(consumer)
        return True

    def _poll_layers(self, layers: LayerFeed) -> None:
        """The Spark queries' newest committed batches (``webapp.layers``) into the status."""
        try:
            changed = layers.poll()
        except KafkaException as exc:
            kafka_log.warning("spark layer status not read: %s", one_line(exc))
            return
        if changed:
            self._set(layers=dict(layers.latest))

    def _count_dead_letters(self, consumer: Consumer) -> None:
        name = topics.DEAD_LETTER.name
        try:
            meta = consumer.list_topics(name, timeout=2)
            t = meta.topics.get(name)
            if t is None or t.error:
                self._set(dead_letters=None, dead_letters_reason=f"topic {name} not found")
                return
            total = 0
            for p in t.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=2, cached=False)
                total += max(0, high - max(low, 0))
            self._set(dead_letters=total, dead_letters_reason=None)
        except KafkaException as exc:
            self._set(dead_letters_reason=one_line(exc))

    # ---- a batch ------------------------------------------------------------------------------------------------
    def _handle(self, consumer: Consumer, messages: list[Message]) -> None:
        writer, decoder = self._writer, self._decoder
        assert writer is not None and decoder is not None and self._epoch is not None
        records: list[rec.Record] = []
        offsets: dict[tuple[str, int], int] = {}
        mismatches: Counter[tuple[str, str]] = Counter()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self._on_error(err)
                continue
            topic = msg.topic()
            offsets[(topic, msg.partition())] = msg.offset() + 1
            kind, stamp = msg.timestamp()
            try:
                record, remarks = decoder.decode(topic, msg.key(), msg.value(),
                                                 None if kind == TIMESTAMP_NOT_AVAILABLE else stamp)
            except rec.Mismatch as exc:
                self._mismatch(mismatches, topic, str(exc), msg, skipped=True)
                continue
            except rec.RegistryUnavailable as exc:
                self._set(registry_reason=one_line(exc))
                log.warning("schema registry unavailable, the batch will be read again: %s", exc)
                self._rewind(consumer)
                self._stop.wait(1.0)
                return
            for remark in remarks:
                self._mismatch(mismatches, topic, remark, msg, skipped=False)
            records.append(record)
        self._set(registry_reason=None)
        if not offsets:
            return
        try:
            writer.write_batch(self._epoch, records, offsets, mismatches)
        except LeaseLost as exc:
            log.warning("%s: standing by", exc)
            raise _Standby() from None
        except EpochMismatch as exc:
            log.warning("cache was wiped or reset (%s): re-reading positions from Redis", exc)
            self._claim(consumer)
            return
        except RedisError as exc:
            self._redis_down(exc)
            self._rewind(consumer)
            self._stop.wait(1.0)
            return
        self._redis_up()
        self._written.update(offsets)
        if any(r.topic in rec.REPORT_KEYS for r in records):
            with contextlib.suppress(RedisError):  # only the mirror: the cache has the report
                self._set(consistency=writer.stored_consistency())
        now = _now_ms()
        with self._lock:
            self.status.batches += 1
            per_topic = Counter(r.topic for r in records)
            for r in records:
                t = self.status.topics[r.topic]
                if r.timestamp_ms is not None and (t.last_event_ms is None or r.timestamp_ms > t.last_event_ms):
                    t.last_event_ms = r.timestamp_ms
            for name, n in per_topic.items():
                self.status.topics[name].records += n
                self.status.topics[name].last_written_ms = now
            for (topic, kind), n in mismatches.items():
                found = self.status.topics[topic].mismatches
                found[kind] = found.get(kind, 0) + n
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        except KafkaException as exc:  # the data and its offsets are safe in Redis; Kafka catches up next batch
            self._set(commit_failures=self.status.commit_failures + 1)
            log.warning("offset commit failed (positions are kept in Redis): %s", exc)
        if self._every("status", STATUS_INTERVAL_S):
            self._publish_status()

    def _mismatch(self, counts: Counter[tuple[str, str]], topic: str, kind: str, msg: Message, skipped: bool) -> None:
        counts[(topic, kind)] += 1
        if (topic, kind) not in self._logged_kinds:  # once per kind and process
            if len(self._logged_kinds) < 10_000:
                self._logged_kinds.add((topic, kind))
            log.warning("%s record %s[%d]@%d does not match its contract: %s (logged once per kind; counted in "
                        "the feeder status)", "skipped" if skipped else "kept", topic, msg.partition(), msg.offset(),
                        kind)

    # ---- Kafka client callbacks ----------------------------------------------------------------------------------
    def _consumer_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.settings.bootstrap_servers,
            # The group only receives the feeder's commits (lag monitoring, Kafka UI): partitions are
            # assigned, not balanced, and positions come from Redis.
            "group.id": self.settings.consumer_group,
            "client.id": f"marketing-engine-feeder-{os.getpid()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._on_stats,
            "error_cb": self._on_error,
            "logger": kafka_log,
            "socket.connection.setup.timeout.ms": 5000,
            "reconnect.backoff.max.ms": 5000,
            # librdkafka prefetches up to 64 MB by default; a batch is at most FEEDER_BATCH_MAX records, so
            # 16 MB keeps the fetch queue full without dominating the pod's memory request.
            "queued.max.messages.kbytes": 16384,
        }
        conf.update(self._extra_conf)
        return conf

    def _layers_conf(self) -> dict[str, Any]:
        """The layer-status reader: assigned partitions, nothing committed (positions are never stored)."""
        conf = {k: v for k, v in self._consumer_conf().items() if k not in {"stats_cb", "statistics.interval.ms"}}
        conf.update({"group.id": f"{self.settings.consumer_group}-layers",
                     "client.id": f"marketing-engine-feeder-layers-{os.getpid()}",
                     "queued.max.messages.kbytes": 1024})
        return conf

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in _KAFKA_DOWN_CODES:
            self._set(kafka_ok=False, kafka_reason=err.str())
            kafka_log.warning("kafka unreachable: %s", err.str())
        else:
            kafka_log.warning("kafka error: %s", err.str())

    def _on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        brokers = stats.get("brokers", {})
        up = [name for name, b in brokers.items() if b.get("state") == "UP" and b.get("nodeid", -1) >= 0]
        lags: dict[str, int] = {}
        unknown: set[str] = set()
        for topic, t in stats.get("topics", {}).items():
            for pid, p in t.get("partitions", {}).items():
                if pid == "-1" or not p.get("desired"):
                    continue
                lag = partition_lag(p, self._written.get((topic, int(pid))))
                if lag is None:
                    unknown.add(topic)
                else:
                    lags[topic] = lags.get(topic, 0) + lag
        with self._lock:
            self._last_stats_at = self._clock()
            if up:
                self.status.kafka_ok, self.status.kafka_reason = True, None
            else:
                states = sorted({b.get("state", "?") for n, b in brokers.items() if b.get("nodeid", -1) >= 0})
                self.status.kafka_ok = False
                self.status.kafka_reason = f"no broker connection up (states: {', '.join(states) or 'none'})"
            for name, t in self.status.topics.items():
                t.lag = None if name in unknown or name in self._missing_topics else lags.get(name, 0)
            complete = not unknown and not self._missing_topics and bool(lags)
            self.status.lag = sum(lags.values()) if complete else None


def partition_lag(p: dict[str, Any], written: int | None = None) -> int | None:
    """Records in a partition not yet in the cache: the end offset minus the next offset known to be in
    the cache (from Redis, else the committed one, else the start of the partition)."""
    end = p.get("ls_offset", -1001)
    if end is None or end < 0:
        return None
    start = p.get("lo_offset", -1001)
    for base in (written, p.get("committed_offset", -1001), start):
        if base is not None and base >= 0:
            if start is not None and start >= 0:
                base = max(base, start)  # records deleted by retention are not owed to the cache
            return max(0, end - base)
    return None


# ---- the health endpoint -------------------------------------------------------------------------------------------


def health_server(feeder: Feeder, host: str, port: int) -> ThreadingHTTPServer:
    """/healthz: the loop turns (liveness: a dependency outage never fails it). /readyz: holding the lease
    and feeding, Redis and Kafka reachable; 503 with the reasons otherwise. /status: the status JSON."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/healthz":
                ok = feeder.alive()
                body: dict[str, Any] = {"status": "ok" if ok else "stuck"}
            elif self.path == "/readyz":
                ok, reasons = feeder.ready()
                body = {"ready": ok, "reasons": reasons}
            elif self.path == "/status":
                ok, body = True, feeder.snapshot().as_json()
            else:
                ok, body = False, {"error": "not found"}
                self._send(404, body)
                return
            self._send(200 if ok else 503, body)

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - probes every few seconds: quiet
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="feeder-health", daemon=True).start()
    return server


# ---- the entry point ----------------------------------------------------------------------------------------------


class StartupError(RuntimeError):
    """A dependency the feeder cannot start without; ``str()`` is the one line the entry point prints."""


def check_kafka(settings: FeederSettings) -> None:
    """The broker answers a metadata request within STARTUP_WAIT_S (it may still be starting)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": settings.consumer_group,
                         "socket.connection.setup.timeout.ms": 5000, "logger": kafka_log})
    deadline = time.monotonic() + settings.startup_wait_s
    try:
        while True:
            try:
                consumer.list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                return
            except KafkaException as exc:
                if time.monotonic() >= deadline:
                    raise StartupError(
                        f"Kafka unreachable at {settings.bootstrap_servers} ({settings.env_name('bootstrap_servers')}): "
                        f"{one_line(exc)} (waited {settings.startup_wait_s:g}s, {settings.env_name('startup_wait_s')})"
                    ) from None
    finally:
        consumer.close()


def check_registry(settings: FeederSettings) -> None:
    """The Schema Registry answers within STARTUP_WAIT_S (the Avro topics cannot be read without it)."""
    url = settings.schema_registry_url
    if url.startswith("mock://"):
        return
    client = serde.registry_client(url)
    deadline = time.monotonic() + settings.startup_wait_s
    while True:
        try:
            client.get_subjects()
            return
        except Exception as exc:  # connection refused, DNS, timeout, not a registry
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"Schema Registry unreachable at {url} ({settings.env_name('schema_registry_url')}): "
                    f"{one_line(exc)} (waited {settings.startup_wait_s:g}s, {settings.env_name('startup_wait_s')})"
                ) from None
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    from common.logs import configure
    from webapp.runtime import redis_address, wait_for_redis

    try:
        settings = FeederSettings.from_env(os.environ)
    except ConfigError as exc:
        print(f"webapp.feeder: {exc}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_json)
    try:
        wait_for_redis(settings)  # type: ignore[arg-type] - reads the fields both settings classes have
        check_kafka(settings)
        check_registry(settings)
        server = health_server(feeder := Feeder(settings), settings.bind_host, settings.feeder_health_port)
    except (StartupError, RuntimeError) as exc:
        print(f"webapp.feeder: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"webapp.feeder: cannot listen on {settings.bind_host}:{settings.feeder_health_port} "
              f"({settings.env_name('feeder_health_port')}): {exc.strerror or exc}", file=sys.stderr)
        return 2

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping after the current batch", signum)
        feeder.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("feeder %s: health on %s:%d, Redis %s, Kafka %s", feeder.instance, settings.bind_host,
             settings.feeder_health_port, redis_address(settings.redis_url), settings.bootstrap_servers)
    try:
        feeder.run()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
