"""Per-batch status of the Spark streaming queries, for freshness anyone can see without reading Delta.

After a micro-batch's Delta commit has succeeded, the job's driver publishes one record to
``dom.pipeline.batch.status.v1`` (contract ``schemas/avro/pipeline_batch_status.avsc``): job, query,
batch id, rows committed, the newest event time among them and the commit time, keyed by the query
name so that the topic's latest record per key is each query's newest committed batch. The web UI's
feeder reads it for the insights page's pipeline health.

* **Never before the commit.** The jobs call :meth:`StatusPublisher.committed` only after their
  ``append_once`` / ``merge_once`` returned True and the rest of the body succeeded; a batch whose
  write failed (the body raised) or a replayed batch whose write was already in the table publishes
  nothing.
* **Measured on what the batch wrote.** Rows and newest event time are one small aggregate over the
  rows written (:func:`observe`, :func:`measured`), or columns (:func:`aggregates`) folded into an
  aggregate the job runs before its writes anyway (bronze); either way published only after the
  commit. Spark's ``Observation`` would have been free but breaks Spark ML in the same session (see
  :class:`Observed`).
* **Never fails the data batch.** Any failure to serialize or deliver (registry or broker down) is
  logged once (again only after a success) and the batch goes on; the next batch's status replaces it.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from common.errors import one_line
from schemas import probes as probe_ids
from schemas import serde, topics
from schemas.partitioning import LIBRDKAFKA_PARTITIONER
from spark.settings import JobSettings

log = logging.getLogger(__name__)
kafka_log = logging.getLogger(f"{__name__}.kafka")

# How long a batch waits at most for its status to be acknowledged (a local broker answers in ms).
FLUSH_TIMEOUT_S = 2.0
# After a failure the status is not tried again for this long: a registry or broker that is down
# must not cost every batch a timeout.
RETRY_AFTER_S = 30.0
@dataclass(frozen=True)
class Observed:
    """A DataFrame a batch wrote and the aggregate to measure on it (after the write).

    Not Spark's ``Observation``: once a session has used one, the session holds an ObservationManager
    that is not serializable, and Spark ML closures that capture the session (LogisticRegression's
    training summary, which the score job's training builds) then fail with "Task not serializable"
    (Spark 4.1.1). The price is one small aggregate job per written table and batch, unless a job
    folds :func:`aggregates` into an aggregate it runs anyway (bronze) or measures a frame it has
    materialised (gold, score)."""

    df: DataFrame
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Measured:
    """What a batch committed: rows, newest event time (epoch ms), the probe customers among the rows."""

    rows: int = 0
    newest_ms: int | None = None
    probes: tuple[str, ...] = ()


def aggregates(event_time: Column | None, customer_id: Column | None, where: Column | None = None) -> list[Column]:
    """The status figures as aggregate columns ``rows``, ``newest_ms``, ``probes`` over the rows where
    ``where`` holds (every row when None): a job can compute them inside an aggregate it runs anyway."""
    def kept(col: Column) -> Column:
        return col if where is None else F.when(where, col)

    rows = F.count(kept(F.lit(1)))
    newest = F.max(kept(F.unix_millis(event_time))) if event_time is not None else F.lit(None).cast("long")
    if customer_id is not None:
        found = F.collect_set(kept(F.when(customer_id.startswith(probe_ids.PROBE_PREFIX), customer_id)))  # nulls skipped
        probes = F.slice(F.array_sort(found), 1, probe_ids.MAX_PROBES_PER_STATUS)
    else:
        probes = F.array().cast("array<string>")
    return [rows.alias("rows"), newest.alias("newest_ms"), probes.alias("probes")]


def from_row(found: Any) -> Measured:
    """The figures :func:`aggregates` computed (a collected Row; None: nothing)."""
    if found is None:
        return Measured()
    newest = found["newest_ms"]
    return Measured(int(found["rows"] or 0), None if newest is None else int(newest), tuple(found["probes"] or ()))


def observe(df: DataFrame, event_time: str | Column | None = None) -> tuple[DataFrame, Observed]:
    """``df`` unchanged, and what :meth:`StatusPublisher.committed` measures on it once it was written:
    its row count, newest event time (epoch ms) and probe customers (``schemas.probes``; rows without a
    customer_id have none)."""
    newest = F.col(event_time) if isinstance(event_time, str) else event_time
    customer = F.col("customer_id") if "customer_id" in df.columns else None
    return df, Observed(df, tuple(aggregates(newest, customer)))


def measured(observed: Observed) -> Measured:
    """What a written DataFrame holds, in one small aggregate."""
    return from_row(observed.df.agg(*observed.columns).first())


def combine(parts: Iterable[Measured]) -> Measured:
    """Several writes of one batch (bronze writes one table per entity) as one status."""
    rows, newest, probes = 0, None, set()
    for part in parts:
        rows += part.rows
        if part.newest_ms is not None and (newest is None or part.newest_ms > newest):
            newest = part.newest_ms
        probes.update(part.probes)
    return Measured(rows, newest, tuple(sorted(probes)[:probe_ids.MAX_PROBES_PER_STATUS]))


def millis(value: dt.datetime | None) -> int | None:
    """Epoch ms of a timestamp Spark collected (naive datetimes are local time, as PySpark makes them)."""
    return None if value is None else int(round(value.timestamp() * 1000))


class StatusPublisher:
    """Publishes a job's committed batches; one per job process (:func:`publisher`)."""

    def __init__(self, settings: JobSettings, job: str, *, producer_conf: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.job = job
        self.topic = settings.topic(topics.PIPELINE_STATUS)
        self._producer_conf = producer_conf or {}
        self._clock = clock
        self._producer: Any = None
        self._serde: serde.TopicSerde | None = None
        self._failing = False
        self._retry_at = 0.0
        self.published = 0
        self.failures = 0

    def committed(self, query: str, batch_id: int, observed: Iterable[Observed]) -> bool:
        """Publish that ``query`` committed ``batch_id``: rows and newest event time from the observations
        of the writes that ran (:func:`observe`). Call it only after the commit succeeded. Returns
        whether the status was acknowledged; never raises: measuring happens inside the same guard
        as sending."""
        return self._publish(query, batch_id, lambda: combine(measured(o) for o in observed))

    def publish(self, query: str, batch_id: int, found: Measured) -> bool:
        """Publish a status from known figures (:meth:`committed` measures them first)."""
        return self._publish(query, batch_id, lambda: found)

    def _publish(self, query: str, batch_id: int, figures: Callable[[], Measured]) -> bool:
        committed_ms = int(self._clock() * 1000)
        if self._failing and time.monotonic() < self._retry_at:
            return False
        try:
            found = figures()
            self._send(query, {
                "job": self.job, "query": query, "batch_id": int(batch_id), "rows": int(found.rows),
                "newest_event_at": found.newest_ms, "committed_at": committed_ms, "probes": list(found.probes),
            }, committed_ms)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the data batch must not fail for it
            self.failures += 1
            self._retry_at = time.monotonic() + RETRY_AFTER_S
            if not self._failing:
                log.warning("%s: could not publish the batch status of %s to %s at %s (KAFKA_BOOTSTRAP_SERVERS, "
                            "SCHEMA_REGISTRY_URL): %s; the data batches go on, retrying every %.0fs (logged once)",
                            self.job, query, self.topic.name, self.settings.bootstrap_servers,
                            one_line(exc), RETRY_AFTER_S)
            self._failing = True
            return False
        if self._failing:
            log.info("%s: batch status published again to %s", self.job, self.topic.name)
        self._failing = False
        self.published += 1
        return True

    def _send(self, query: str, record: dict[str, Any], timestamp_ms: int) -> None:
        from confluent_kafka import Producer

        if self._serde is None:
            self._serde = serde.TopicSerde(serde.registry_client(self.settings.schema_registry_url), self.topic)
        value = self._serde.serialize(record)
        if self._producer is None:
            self._producer = Producer({
                "bootstrap.servers": self.settings.bootstrap_servers,
                "client.id": f"marketing-engine-{self.job}-status",
                "partitioner": LIBRDKAFKA_PARTITIONER,
                "acks": "all",
                "linger.ms": 0,
                "message.timeout.ms": 10_000,
                "socket.connection.setup.timeout.ms": 5_000,
                "logger": kafka_log,  # librdkafka's reconnect chatter through logging, throttled by level
                **self._producer_conf,
            })
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err.str())

        self._producer.produce(self.topic.name, key=query.encode(), value=value, timestamp=timestamp_ms,
                               on_delivery=delivered)
        if self._producer.flush(FLUSH_TIMEOUT_S) > 0:
            raise TimeoutError(f"not acknowledged within {FLUSH_TIMEOUT_S:g}s")
        if errors:
            raise RuntimeError(errors[0])


_PUBLISHERS: dict[tuple[JobSettings, str], StatusPublisher] = {}


def publisher(settings: JobSettings, job: str) -> StatusPublisher:
    """The process's publisher for ``job`` (one Kafka producer and registry client per job and settings)."""
    key = (settings, job)
    found = _PUBLISHERS.get(key)
    if found is None:
        found = _PUBLISHERS[key] = StatusPublisher(settings, job)
    return found
