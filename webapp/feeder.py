"""The background consumer that feeds the Redis cache, supervised so it never dies silently.

One thread per process (see ``webapp.gunicorn_conf`` for how that holds under gunicorn) runs a
confluent-kafka Consumer in its own group (``CONSUMER_GROUP``, ``enable.auto.commit=false``) over
``dom.customer.consolidated.v1`` (JSON), ``dom.propensity.score.v1`` and
``dom.segment.materialized.v1`` (Avro, decoded with the project serde through the Schema Registry).

Per consumed batch (up to ``BATCH_MAX`` records): decode and map each record, skip and count a
malformed one, write the whole batch to Redis in one atomic script call (data, indexes and the
batch's next offsets together), THEN commit the same offsets to Kafka.

Positions: the offsets stored in Redis with the data are the source of truth, the Kafka commit
follows them (it is what lag monitoring and Kafka UI show). This is what makes a Redis restart
without persistence safe: the wiped cache has no offsets (and a new epoch), so the consumer seeks
back and rebuilds it; with Kafka offsets alone the cache would stay empty behind "committed"
offsets. When Redis is down the consumer pauses its partitions (staying in the group), and when it
returns re-reads the positions from Redis and resumes: nothing is lost, nothing is written twice out
of order (re-applying a record is idempotent: every record carries all the fields its topic owns).

Supervision: any exception in the consumer loop is logged with its traceback, counted, reported in
``status()`` (shown by ``/readyz`` and the page) and the loop is rebuilt after a backoff
(1 s doubling to 30 s). ``ensure_running()`` restarts the thread itself if it ever ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
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
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas import serde
from webapp import cache as cache_mod
from webapp import model
from webapp.cache import Cache, EpochMismatch, RedisError, Update
from webapp.settings import WebSettings

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

BATCH_MAX = 500
POLL_TIMEOUT_S = 0.5
STATS_INTERVAL_MS = 2000
STATS_STALE_S = 15.0
EPOCH_CHECK_S = 2.0
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
_KAFKA_DOWN_CODES = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE,
                     KafkaError._AUTHENTICATION}


class RegistryUnavailable(RuntimeError):
    """The Schema Registry could not be asked for a schema (transient: the batch is retried)."""


class CacheFeeder:
    def __init__(
        self,
        settings: WebSettings,
        *,
        consumer_conf: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self._extra_conf = dict(consumer_conf or {})
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._reset_pending = settings.cache_reset_on_start
        # status (read by the web threads through status())
        self.state = "stopped"
        self.kafka_ok: bool | None = None
        self.kafka_reason: str | None = "not connected yet"
        self.redis_ok: bool | None = None
        self.redis_reason: str | None = None
        self.registry_reason: str | None = None
        self.lag: int | None = None
        self.lag_by_partition: dict[str, int] = {}
        self.assigned: list[str] = []
        self.restarts = 0
        self.last_error: str | None = None
        self.last_error_ms: int | None = None
        self.records = 0
        self.malformed: Counter[str] = Counter()
        self.batches = 0
        self.commit_failures = 0
        self.cache_rebuilds = 0
        self.last_batch_ms: int | None = None
        self._last_stats_at: float | None = None
        # per run
        self._epoch: str | None = None
        self._epoch_checked = 0.0
        self._resync = False
        # next offset known to be in the cache, per assigned partition (consumer thread only)
        self._written: dict[tuple[str, int], int] = {}
        self._cache: Cache | None = None
        self._serdes: dict[str, serde.TopicSerde] = {}
        self._registry: Any = None

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Start the thread in this process if it is not running (idempotent, fork-safe: a thread
        inherited through fork() does not exist in the child, the pid check catches that)."""
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            if self._thread is not None and self._pid == os.getpid() and not self._stop.is_set():
                self._report_error("consumer thread had ended; restarted")
                self.restarts += 1
            self._stop.clear()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._supervise, name="cache-feeder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout)
        self.state = "stopped"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def status(self) -> dict[str, Any]:
        with self._status_lock:
            kafka_ok = self.kafka_ok
            kafka_reason = self.kafka_reason
            if kafka_ok and self._last_stats_at is not None and self._clock() - self._last_stats_at > STATS_STALE_S:
                kafka_ok, kafka_reason = None, f"no client statistics for {STATS_STALE_S:g}s"
            return {
                "alive": self.alive,
                "state": self.state,
                "kafka_ok": kafka_ok,
                "kafka_reason": kafka_reason,
                "redis_ok": self.redis_ok,
                "redis_reason": self.redis_reason,
                "registry_reason": self.registry_reason,
                "lag": self.lag,
                "lag_by_partition": dict(self.lag_by_partition),
                "assigned": list(self.assigned),
                "restarts": self.restarts,
                "last_error": self.last_error,
                "last_error_ms": self.last_error_ms,
                "records": self.records,
                "malformed": dict(self.malformed),
                "batches": self.batches,
                "commit_failures": self.commit_failures,
                "cache_rebuilds": self.cache_rebuilds,
                "last_batch_ms": self.last_batch_ms,
                "group": self.settings.consumer_group,
            }

    # ---- supervision ----------------------------------------------------------------------------------------
    def _supervise(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.state = "starting"
                self._run()
            except Exception as exc:  # the loop must never die silently
                log.exception("cache consumer failed; restarting in %.0fs", backoff)
                self._report_error(f"{type(exc).__name__}: {exc}")
                self.restarts += 1
                self.state = "restarting"
                if time.monotonic() - started > 60:
                    backoff = BACKOFF_FIRST_S
                self._stop.wait(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
        self.state = "stopped"

    def _redis_down(self, exc: BaseException) -> None:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        with self._status_lock:
            was = self.redis_ok
            self.redis_ok, self.redis_reason = False, reason
        if was is not False:
            log.warning("redis unreachable, consumer paused until it is back: %s", reason)

    def _redis_up(self) -> None:
        with self._status_lock:
            was = self.redis_ok
            self.redis_ok, self.redis_reason = True, None
        if was is False:
            log.info("redis is back: positions re-read from the cache, consuming again")
        if self.state == "waiting for redis":
            self.state = "running"

    def _report_error(self, text: str) -> None:
        with self._status_lock:
            self.last_error = " ".join(text.split())[:500]
            self.last_error_ms = int(self._clock() * 1000)

    # ---- the consumer loop ------------------------------------------------------------------------------------
    def _consumer_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.settings.bootstrap_servers,
            "group.id": self.settings.consumer_group,
            "client.id": f"marketing-engine-webapp-{os.getpid()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # range assigns the same partition numbers of the three co-keyed topics to one member
            "partition.assignment.strategy": "range",
            "statistics.interval.ms": STATS_INTERVAL_MS,
            "stats_cb": self._on_stats,
            "error_cb": self._on_error,
            "logger": kafka_log,
            "socket.connection.setup.timeout.ms": 5000,
            "reconnect.backoff.max.ms": 5000,
        }
        conf.update(self._extra_conf)
        return conf

    def _run(self) -> None:
        self._cache = Cache(cache_mod.connect(self.settings.redis_url, self.settings.redis_password,
                                              timeout=5.0, name="webapp-feeder"))
        self._registry = serde.registry_client(self.settings.schema_registry_url)
        self._serdes = {t.name: serde.TopicSerde(self._registry, t) for t in model.CACHE_TOPICS if t.value_format == "avro"}
        self._epoch = None
        self._resync = False
        self._written = {}
        consumer = Consumer(self._consumer_conf())
        try:
            consumer.subscribe([t.name for t in model.CACHE_TOPICS], on_assign=self._on_assign,
                               on_revoke=self._on_revoke, on_lost=self._on_revoke)
            self.state = "running"
            while not self._stop.is_set():
                if not self._cache_ready(consumer):
                    self._idle(consumer)
                    continue
                messages = consumer.consume(BATCH_MAX, POLL_TIMEOUT_S)
                if messages:
                    self._handle(consumer, messages)
        finally:
            with self._status_lock:
                self.assigned = []
            try:
                consumer.close()
            except Exception:  # closing a consumer whose broker is gone must not mask the real error
                log.warning("consumer close failed", exc_info=True)
            self._cache.redis.close()

    def _cache_ready(self, consumer: Consumer) -> bool:
        """Reset (once, if asked), adopt the cache epoch, re-read positions when needed. False when
        Redis is unreachable."""
        assert self._cache is not None
        try:
            if self._reset_pending:
                removed = self._cache.reset()
                log.warning("cache reset on start: removed %d keys; rebuilding from the topics", removed)
                self._reset_pending = False
                self._epoch = None
            if self._epoch is not None and time.monotonic() - self._epoch_checked > EPOCH_CHECK_S:
                # Without traffic no write would notice that Redis restarted empty (or was reset):
                # look at the epoch now and then, and rebuild when it changed.
                current = self._cache.epoch()
                self._epoch_checked = time.monotonic()
                if current != self._epoch:
                    log.warning("cache epoch changed (%s -> %s): the cache was wiped or reset, rebuilding",
                                self._epoch, current or "none")
                    self._epoch = None
            if self._epoch is None:
                self._epoch, created = self._cache.claim_epoch()
                self._epoch_checked = time.monotonic()
                if created:
                    self.cache_rebuilds += 1
                    log.info("cache is empty (new epoch %s): rebuilding from the beginning of the topics", self._epoch)
                self._resync = True
            if self._resync:
                self._seek_to_stored(consumer)
                self._resync = False
        except RedisError as exc:
            self._redis_down(exc)
            self.state = "waiting for redis"
            return False
        except KafkaException as exc:  # e.g. a seek on a partition that is not fetching yet: retry shortly
            log.info("cannot reposition yet (%s); retrying", exc)
            self._redis_up()
            return False
        self._redis_up()
        return True

    def _idle(self, consumer: Consumer) -> None:
        """Redis is down: hold the partitions (paused, still in the group) and wait."""
        self._resync = True
        with contextlib.suppress(KafkaException):
            consumer.pause(consumer.assignment())
        consumer.poll(1.0)  # serves callbacks; paused partitions deliver nothing (anything else is re-read)

    def _seek_to_stored(self, consumer: Consumer) -> None:
        assignment = consumer.assignment()
        if not assignment:
            return
        assert self._cache is not None
        stored = self._cache.stored_offsets([(tp.topic, tp.partition) for tp in assignment])
        for tp in assignment:
            consumer.seek(TopicPartition(tp.topic, tp.partition, stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)))
        # 0 = "from the beginning": the lag then counts the whole partition (bounded below by its start)
        self._written = {(tp.topic, tp.partition): stored.get((tp.topic, tp.partition), 0) for tp in assignment}
        consumer.resume(assignment)
        self.state = "running"

    def _handle(self, consumer: Consumer, messages: list[Message]) -> None:
        assert self._cache is not None and self._epoch is not None
        updates: list[Update] = []
        offsets: dict[tuple[str, int], int] = {}
        counts: Counter[str] = Counter()
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self._on_error(err)
                continue
            topic = msg.topic()
            offsets[(topic, msg.partition())] = msg.offset() + 1
            counts[f"records:{topic}"] += 1
            try:
                updates.append(self._decode(msg))
            except model.Malformed as exc:
                counts[f"malformed:{topic}"] += 1
                log.warning("skipped malformed record %s[%d]@%d: %s", topic, msg.partition(), msg.offset(), exc)
            except RegistryUnavailable as exc:
                self.registry_reason = str(exc)
                log.warning("schema registry unavailable, batch will be re-read: %s", exc)
                self._resync = True
                self._stop.wait(1.0)
                return
        self.registry_reason = None
        if not offsets:
            return
        try:
            self._cache.write_batch(self._epoch, updates, offsets, counts)
        except EpochMismatch as exc:
            log.warning("cache was wiped or reset (%s): re-reading positions from Redis", exc)
            self._epoch = None
            return
        except RedisError as exc:
            self._redis_down(exc)
            self._resync = True
            return
        self._redis_up()
        self._written.update(offsets)
        with self._status_lock:
            self.records += sum(n for k, n in counts.items() if k.startswith("records:"))
            for k, n in counts.items():
                if k.startswith("malformed:"):
                    self.malformed[k.split(":", 1)[1]] += n
            self.batches += 1
            self.last_batch_ms = int(self._clock() * 1000)
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
        except KafkaException as exc:  # the data and its offsets are safe in Redis; Kafka catches up next batch
            self.commit_failures += 1
            log.warning("offset commit failed (positions are kept in Redis): %s", exc)

    # ---- decoding ---------------------------------------------------------------------------------------------
    def _decode(self, msg: Message) -> Update:
        topic = msg.topic()
        source = model.SOURCE_BY_TOPIC[topic]
        value = msg.value()
        if value is None:  # a tombstone: the source no longer has this row
            return Update(model.resolve_customer_id(msg.key(), None), source, tombstone=True)
        record = model.decode_json_value(value) if source == model.CONSOLIDATED else self._decode_avro(topic, value)
        customer_id = model.resolve_customer_id(msg.key(), record)
        fields = model.map_record(source, record)
        if source == model.CONSOLIDATED and fields.get("last_activity") is None:
            kind, stamp = msg.timestamp()
            if kind != TIMESTAMP_NOT_AVAILABLE:
                fields["last_activity"] = stamp
        if source == model.PROPENSITY and fields.get("propensity_score") is None:
            raise model.Malformed("propensity record without a score")
        return Update(customer_id, source, fields)

    def _decode_avro(self, topic: str, value: bytes) -> dict[str, Any]:
        try:
            schema_id, _ = serde.parse_frame(value)
        except serde.FramingError as exc:
            raise model.Malformed(str(exc)) from None
        try:
            self._registry.get_schema(schema_id)  # cached after the first lookup
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise model.Malformed(f"schema id {schema_id} is unknown to the registry") from None
            raise RegistryUnavailable(f"registry answered HTTP {exc.http_status_code}: {exc}") from None
        except Exception as exc:  # connection refused, DNS, timeout (httpx)
            raise RegistryUnavailable(f"{type(exc).__name__}: {exc}") from None
        try:
            record = self._serdes[topic].deserialize(value)
        except Exception as exc:
            raise model.Malformed(f"Avro decode failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(record, dict):
            raise model.Malformed("Avro value is not a record")
        return record

    # ---- callbacks (run on the consumer thread, inside poll/consume) ------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._cache is not None
        try:
            stored = self._cache.stored_offsets([(tp.topic, tp.partition) for tp in partitions])
            for tp in partitions:
                tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
            consumer.assign(partitions)
            self._written.update({(tp.topic, tp.partition): stored.get((tp.topic, tp.partition), 0)
                                  for tp in partitions})
        except RedisError as exc:
            # Start from Kafka's committed offsets (never ahead of Redis) but hold the partitions
            # until Redis answers and the positions can be re-read from it.
            self._redis_down(exc)
            consumer.assign(partitions)
            consumer.pause(partitions)
            self._resync = True
        with self._status_lock:
            self.assigned = sorted(f"{tp.topic}[{tp.partition}]" for tp in consumer.assignment())
        log.info("assigned %s", ", ".join(self.assigned) or "nothing")

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._written.pop((tp.topic, tp.partition), None)
        with self._status_lock:
            gone = {f"{tp.topic}[{tp.partition}]" for tp in partitions}
            self.assigned = [a for a in self.assigned if a not in gone]
            for name in gone:
                self.lag_by_partition.pop(name, None)

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in _KAFKA_DOWN_CODES:
            with self._status_lock:
                self.kafka_ok = False
                self.kafka_reason = err.str()
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
        complete = True
        for topic, t in stats.get("topics", {}).items():
            for pid, p in t.get("partitions", {}).items():
                if pid == "-1" or not p.get("desired"):
                    continue
                lag = _partition_lag(p, self._written.get((topic, int(pid))))
                if lag is None:
                    complete = False
                else:
                    lags[f"{topic}[{pid}]"] = lag
        with self._status_lock:
            self._last_stats_at = self._clock()
            if up:
                self.kafka_ok, self.kafka_reason = True, None
            else:
                states = sorted({b.get("state", "?") for n, b in brokers.items() if b.get("nodeid", -1) >= 0})
                self.kafka_ok = False
                self.kafka_reason = f"no broker connection up (states: {', '.join(states) or 'none'})"
            self.lag_by_partition = lags
            self.lag = sum(lags.values()) if complete and lags else None  # None: unknown or nothing assigned


def _partition_lag(p: dict[str, Any], written: int | None = None) -> int | None:
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
