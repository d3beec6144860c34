"""Erasure: forget customers in every Delta table the jobs write (``python -m spark.jobs.erasure <id> ...``).

For each requested customer id, in every table (bronze customer_profile / order_placed /
activation_status, quarantine, silver customers / orders / activations, gold c360, gold propensity):

1. DELETE its rows. Bronze and silver hold the raw personal fields; gold c360 copies the profile;
   quarantine holds raw bytes, so a quarantined record goes when its key is the id or its value bytes
   contain the id's text (an undecodable record has no customer_id column to match).
2. REORG TABLE ... APPLY (PURGE): with deletion vectors on (the MERGEd tables), DELETE only marks the
   rows; the purge rewrites the files that still hold them.
3. VACUUM with the purge's age as retention: the files the DELETE/purge replaced and the change data
   feed files that hold the customer (update pre-images under ``_change_data``) leave storage now, not
   after Delta's 7-day default, while a file a later commit replaced stays (a reader may still need it).
   Only once every streaming reader of the table (silver on bronze, gold on silver's change feed, score
   on gold's; found by table id in the checkpoints) has committed a batch past the purge: a reader behind
   it would fail on a missing file. A table whose readers stay behind for ERASURE_READER_WAIT_S is
   vacuumed by the next run, and the report says so.

``python -m spark.jobs.erasure <id> ...`` erases the ids given; ``--from-topic`` (the ScheduledSparkApplication) every
request on dom.customer.erasure.v1 that the report does not list yet.

Every step is idempotent: erasing a customer twice deletes nothing the second time. Each run appends
what it erased (customer, table, rows, when) to the erasure report table ``<DELTA_ROOT>/erasure/report``,
which names customer ids only: a later request for an id no table holds says whether it was erased
before (and when) or was never known.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import operator
import sys
import time
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.window import Window

from common.errors import one_line
from schemas import topics
from schemas.ids import valid_customer_id
from spark import preflight, tables
from spark.entities import ENTITIES
from spark.runtime import main_batch
from spark.settings import JobSettings

log = logging.getLogger(__name__)
JOB = "erasure"
FROM_TOPIC = "--from-topic"  # the scheduled mode (ScheduledSparkApplication): every request not yet handled
READER_POLL_S = 2.0
# A file the purge replaced is stamped no later than the purge's commit; this margin keeps the cutoff off
# the files a commit right after the purge replaced (they can still be a reader's to read).
CLOCK_MARGIN_MS = 1000
HOUSEKEEPING = "-"  # the report's customer_id of a row that records a deferred VACUUM done later
REPORT_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType(), False),
    T.StructField("store", T.StringType(), False),  # layer/table
    T.StructField("rows", T.LongType(), False),
    T.StructField("erased_at", T.TimestampType(), False),
    T.StructField("request_id", T.StringType(), True),  # the erasure request answered (none from the CLI)
    T.StructField("vacuumed", T.BooleanType(), True),  # false: a reader was behind, the next run vacuums
])


class TracesLeft(RuntimeError):
    """The scan after a complete erasure still found personal data; ``str()`` is the line printed."""


class UnknownCustomer(ValueError):
    """No table holds the id and no earlier run erased it; ``str()`` is the line printed."""


@dataclass(frozen=True)
class Store:
    layer: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.layer}/{self.name}"


STORES = (
    *(Store("bronze", e.name) for e in ENTITIES),
    Store("quarantine", "records"),
    *(Store("silver", e.silver) for e in ENTITIES),
    Store("gold", "c360"),
    Store("gold", "propensity"),
)


def matches(store: Store, ids: list[str]) -> Column:
    """The rows of ``store`` that belong to one of ``ids``."""
    if store.layer == "quarantine":
        key = F.col("key_bytes").cast("string").isin(ids)
        value = F.col("value").cast("string")  # invalid UTF-8 decodes to replacement chars: ids are ASCII
        return key | F.exists(F.array(*[F.lit(i) for i in ids]), lambda i: F.instr(value, i) > 0)
    if store.layer == "bronze":
        return F.col("customer_id").isin(ids) | F.col("key").isin(ids)
    return F.col("customer_id").isin(ids)


@dataclass
class Purged:
    """One table after its DELETE and purge: rows deleted per id, the version and time the purge left."""
    store: Store
    path: str
    table_id: str
    found: dict[str, int]
    version: int
    committed_ms: int


def purge_store(spark: SparkSession, path: str, store: Store, ids: list[str]) -> Purged:
    """DELETE the ids' rows and rewrite the files that still hold them (the VACUUM comes later)."""
    rows = spark.read.format("delta").load(path).where(matches(store, ids))
    found = {i: 0 for i in ids}
    if store.layer == "quarantine":
        for row in rows.select(F.col("key_bytes").cast("string").alias("k"), F.col("value").cast("string").alias("v")
                               ).collect():
            hit = next((i for i in ids if row.k == i or (row.v and i in row.v)), ids[0])
            found[hit] += 1
    else:
        owner = F.col("customer_id")
        if store.layer == "bronze":
            owner = F.when(F.col("customer_id").isin(ids), F.col("customer_id")).otherwise(F.col("key"))
        for row in rows.groupBy(owner.alias("owner")).count().collect():
            found[row.owner] += row["count"]
    if sum(found.values()):
        DeltaTable.forPath(spark, path).delete(matches(store, ids))
    # Runs even when nothing matched now: a run that failed after its DELETE left files to rewrite.
    spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
    table = DeltaTable.forPath(spark, path)
    last = table.history(1).select("version", "timestamp").first()
    table_id = table.detail().select("id").first()[0]
    return Purged(store, path, table_id, found, int(last.version), int(last.timestamp.timestamp() * 1000))


def personal_values(spark: SparkSession, settings: JobSettings, ids: list[str]) -> set[str]:
    """The forgotten customers' names, e-mail addresses and phone numbers as the tables hold them now, minus
    any value another customer also has (no trace of these): held in memory only, to look for afterwards."""
    values: set[str] = set()
    shared: set[str] = set()
    for store in (Store("bronze", "customer_profile"), Store("silver", "customers"), Store("gold", "c360")):
        path = settings.table(store.layer, store.name)
        if not tables.exists(spark, path):
            continue
        df = spark.read.format("delta").load(path)
        columns = [c for c in df.columns if c in tables.PERSONAL]
        if not columns:
            continue
        mine = {v for row in df.where(matches(store, ids)).select(*columns).collect() for v in row
                if isinstance(v, str) and v.strip()}
        if mine:
            others = df.where(~matches(store, ids))
            shared |= {v for c in columns for (v,) in others.where(F.col(c).isin(list(mine))).select(c)
                       .distinct().collect()}
        values |= mine
    return values - shared


@dataclass
class Scan:
    files: int
    hits: list[str]  # files (parquet or _delta_log) that hold one of the values

    def line(self, values: int, root: str, deferred: bool) -> str:
        if not self.hits:
            return (f"erasure: scan of {root}: none of the {values} personal value(s) of the forgotten customer(s) "
                    f"in any of {self.files} files (parquet data, change data, checkpoints, _delta_log)")
        return (f"erasure: scan of {root}: {len(self.hits)} of {self.files} files still hold personal data of the "
                f"forgotten customer(s)" + (" until the deferred VACUUM" if deferred else "") + f", e.g. {self.hits[0]}")


def scan(spark: SparkSession, root: str, values: set[str]) -> Scan:
    """Every parquet file under the Delta root (table data, change data, log checkpoints: whatever VACUUM
    left) read back, and every other _delta_log file as text, looking for any of ``values``."""
    by_folder: dict[str, list[str]] = {}
    logs: list[Path] = []
    for path in Path(root.removeprefix("file:")).rglob("*"):
        if path.is_file() and path.suffix == ".parquet":
            by_folder.setdefault(str(path.parent), []).append(str(path))
        elif path.is_file() and path.parent.name == "_delta_log":
            logs.append(path)
    hits: list[str] = []
    for files in by_folder.values():
        df = spark.read.option("mergeSchema", "true").parquet(*files)
        text = F.concat_ws("\u0001", *[F.col(f"`{c}`").cast("string") for c in df.columns])
        found = df.where(reduce(operator.or_, [F.instr(text, v) > 0 for v in values]))
        hits += [r[0] for r in found.select(F.col("_metadata.file_path")).distinct().collect()]
    for path in logs:
        content = path.read_text(encoding="utf-8", errors="replace")
        if any(v in content for v in values):
            hits.append(str(path))
    return Scan(sum(len(f) for f in by_folder.values()) + len(logs), sorted(hits))


def reader_positions(checkpoints: str) -> dict[str, list[tuple[str, int]]]:
    """Delta table id -> (checkpoint, next version to read) of every streaming query reading it, from the
    newest committed batch of each checkpoint under ``checkpoints`` (a Delta source's offset names its table
    by id; ``reservoirVersion`` is the first version the reader has not finished)."""
    found: dict[str, list[tuple[str, int]]] = {}
    for offsets in Path(checkpoints).glob("**/offsets"):
        commits = offsets.parent / "commits"
        done = sorted((int(f.name) for f in commits.iterdir() if f.name.isdigit()), reverse=True) \
            if commits.is_dir() else []
        if not done or not (offsets / str(done[0])).is_file():
            continue
        for line in (offsets / str(done[0])).read_text().splitlines()[2:]:
            try:
                source = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(source, dict) and "reservoirId" in source:
                found.setdefault(source["reservoirId"], []).append(
                    (str(offsets.parent.relative_to(checkpoints)), int(source["reservoirVersion"])))
    return found


def behind(purged: Purged, positions: dict[str, list[tuple[str, int]]]) -> list[str]:
    """The streaming readers of this table that have not yet read past the purge's version."""
    return [f"{name} (at version {at}, purge at {purged.version})"
            for name, at in positions.get(purged.table_id, []) if at <= purged.version]


def vacuum(spark: SparkSession, purged: Purged, now_ms: int) -> None:
    """Remove from storage the files the purge (and anything before it) replaced, and no newer ones.

    The retention is the purge's age: a file that a commit after the purge replaced may still be needed by a
    reader, and it is younger than that. The purge's own files are unreferenced only once every reader has
    read past its version (``behind``)."""
    age_h = max(0.0, (now_ms - purged.committed_ms - CLOCK_MARGIN_MS) / 3_600_000)
    DeltaTable.forPath(spark, purged.path).vacuum(age_h)


def pending_requests(spark: SparkSession, settings: JobSettings, report_path: str) -> list[dict]:
    """The erasure requests on the erasure topic that no run has handled yet (by request id), oldest first."""
    from schemas import serde  # the driver decodes: the topic holds a few records per forgotten customer

    topic = settings.topic(topics.CUSTOMER_ERASURE)
    raw = (spark.read.format("kafka").option("kafka.bootstrap.servers", settings.bootstrap_servers)
           .option("subscribe", topic.name).option("startingOffsets", "earliest").option("endingOffsets", "latest")
           .option("failOnDataLoss", "false").load().select("value").collect())
    codec = serde.TopicSerde(serde.registry_client(settings.schema_registry_url), topic, auto_register=False)
    requests = []
    for row in raw:
        try:
            requests.append(codec.deserialize(bytes(row.value)))
        except Exception as exc:  # noqa: BLE001 - a record that breaks the contract is named and skipped
            log.warning("erasure: a record on %s does not decode under its contract (%s): skipped",
                        topic.name, one_line(exc, 160))
    handled = {r.request_id for r in spark.read.format("delta").load(report_path)
               .where(F.col("request_id").isNotNull()).select("request_id").distinct().collect()}
    todo = [r for r in requests if r["request_id"] not in handled]
    return sorted(todo, key=lambda r: serde.to_millis(r["requested_at"]))


def run(spark: SparkSession, settings: JobSettings, ids: list[str], requests: dict[str, str] | None = None,
        reader_wait_s: float | None = None) -> list[str]:
    """Erase ``ids`` from every table; returns the lines printed (one per id, then one per deferred VACUUM).
    ``requests`` maps an id to the request id it came from (the report records it). UnknownCustomer when an
    id is neither in a table nor in the report (and no request names it: a request is answered, not failed)."""
    bad = [i for i in ids if not valid_customer_id(i)]
    if bad or not ids:
        raise ValueError(f"not a customer id: {bad[0]!r}" if bad else "no customer id given")
    ids = list(dict.fromkeys(ids))
    requests = requests or {}
    report_path = _prepare(spark, settings)
    values = personal_values(spark, settings, ids)
    purged, deferred = _purge_and_vacuum(spark, settings, ids, reader_wait_s)
    scanned = scan(spark, settings.delta_root, values) if values else None
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [(i, p.store.label, p.found[i], now, requests.get(i), p.store.label not in deferred)
            for i in ids for p in purged] or [(i, "-", 0, now, requests.get(i), True) for i in ids]
    earlier = {r.customer_id: r.last for r in spark.read.format("delta").load(report_path)
               .where(F.col("customer_id").isin(ids) & (F.col("rows") > 0))
               .groupBy("customer_id").agg(F.max("erased_at").alias("last")).collect()}
    spark.createDataFrame(rows, REPORT_SCHEMA).write.format("delta").mode("append").save(report_path)
    lines, unknown = [], []
    for i in ids:
        done = {p.store.label: p.found[i] for p in purged if p.found[i]}
        if done:
            lines.append(f"erasure: customer {i}: deleted " + ", ".join(f"{k} {v}" for k, v in done.items())
                         + ("; files rewritten and vacuumed" if not deferred else "; files rewritten"))
        elif i in earlier:
            lines.append(f"erasure: customer {i}: nothing left to erase (erased on {earlier[i]:%Y-%m-%d %H:%M:%S} UTC)")
        elif i in requests:
            lines.append(f"erasure: customer {i}: unknown customer id (request {requests[i]}): no Delta table "
                         "holds it and it was never erased")
        else:
            unknown.append(i)
    lines += _deferred_lines(settings, deferred, reader_wait_s)
    if scanned is not None:
        lines.append(scanned.line(len(values), settings.delta_root, bool(deferred)))
    for line in lines:
        print(line, flush=True)
    if scanned is not None and scanned.hits and not deferred:
        raise TracesLeft(f"erasure: {len(scanned.hits)} file(s) under {settings.delta_root} still hold personal "
                         f"data of the forgotten customer(s), with nothing left to vacuum: {scanned.hits[0]}")
    if unknown:
        raise UnknownCustomer(f"unknown customer id {', '.join(unknown)}: no Delta table under {settings.delta_root} "
                              f"({settings.env_name('delta_root')}) holds it and it was never erased")
    return lines


def _prepare(spark: SparkSession, settings: JobSettings) -> str:
    # A VACUUM with less than the table's retention is refused unless this check is off (this session only).
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    # VACUUM lists a table's files with this many tasks (Spark's default: 10,000 per table, minutes on
    # 2 cores for tables of a few files); the cores the session has are enough.
    spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism",
                   str(max(2, spark.sparkContext.defaultParallelism)))
    report_path = settings.table("erasure", "report")
    tables.ensure(spark, report_path, REPORT_SCHEMA, tables.APPENDED)
    return report_path


def _purge_and_vacuum(spark: SparkSession, settings: JobSettings, ids: list[str], reader_wait_s: float | None,
                      only: set[str] | None = None) -> tuple[list[Purged], dict[str, list[str]]]:
    """Purge every table (or those labelled in ``only``), then vacuum each once its readers are past the
    purge; the tables still waiting after the reader wait, with the readers they wait for."""
    purged: list[Purged] = []
    for store in STORES:
        path = settings.table(store.layer, store.name)
        if only is not None and store.label not in only:
            continue
        if not tables.exists(spark, path):
            log.info("%s: no table at %s (that job has not run): nothing to erase there", store.label, path)
            continue
        purged.append(purge_store(spark, path, store, ids))
    # The streaming readers (silver on bronze, gold on silver's change feed, score on gold's) must have read
    # the versions whose files the VACUUM removes, or their next batch fails on a missing file.
    wait_s = settings.erasure_reader_wait_s if reader_wait_s is None else reader_wait_s
    deadline = time.monotonic() + wait_s
    waiting = list(purged)
    while True:
        positions = reader_positions(settings.checkpoints)
        still = [p for p in waiting if behind(p, positions)]
        for p in waiting:
            if p not in still:
                vacuum(spark, p, int(time.time() * 1000))
        waiting = still
        if not waiting or time.monotonic() >= deadline:
            return purged, {p.store.label: behind(p, positions) for p in waiting}
        time.sleep(READER_POLL_S)


def _deferred_lines(settings: JobSettings, deferred: dict[str, list[str]], reader_wait_s: float | None) -> list[str]:
    wait_s = settings.erasure_reader_wait_s if reader_wait_s is None else reader_wait_s
    return [f"erasure: VACUUM of {label} deferred to the next run: {', '.join(readers)} not past the erasure "
            f"after {wait_s:.0f}s ({settings.env_name('erasure_reader_wait_s')}); until then its replaced files "
            "still hold the erased rows" for label, readers in deferred.items()]


def run_requests(spark: SparkSession, settings: JobSettings, reader_wait_s: float | None = None) -> list[str]:
    """The scheduled mode: every request on the erasure topic that no run has handled, then the VACUUMs an
    earlier run deferred."""
    report_path = _prepare(spark, settings)
    todo = pending_requests(spark, settings, report_path)
    lines: list[str] = []
    if todo:
        # One erasure per customer (its newest request); the older requests are answered by it too.
        latest = {r["customer_id"]: r["request_id"] for r in todo}
        lines += run(spark, settings, list(latest), latest, reader_wait_s)
        older = [r for r in todo if r["request_id"] not in set(latest.values())]
        if older:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            spark.createDataFrame([(r["customer_id"], "-", 0, now, r["request_id"], True) for r in older],
                                  REPORT_SCHEMA).write.format("delta").mode("append").save(report_path)
        return lines  # every table was purged and, where its readers allowed, vacuumed just now
    print(f"erasure: no new request on {settings.topic(topics.CUSTOMER_ERASURE).name}", flush=True)
    # A store whose newest report row says "not vacuumed" still has files holding erased rows.
    newest = Window.partitionBy("store").orderBy(F.col("erased_at").desc())
    pending = {r.store for r in spark.read.format("delta").load(report_path)
               .withColumn("_rn", F.row_number().over(newest)).where("_rn = 1 AND NOT vacuumed").collect()}
    if pending:
        purged, deferred = _purge_and_vacuum(spark, settings, [], reader_wait_s, only=pending)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        done = [(HOUSEKEEPING, p.store.label, 0, now, None, True) for p in purged if p.store.label not in deferred]
        later = _deferred_lines(settings, deferred, reader_wait_s)
        if done:
            spark.createDataFrame(done, REPORT_SCHEMA).write.format("delta").mode("append").save(report_path)
            later.insert(0, f"erasure: vacuumed {', '.join(r[1] for r in done)} (deferred by an earlier run)")
        for line in later:
            print(line, flush=True)
        lines += later
    return lines


def _main(spark: SparkSession, settings: JobSettings) -> None:
    try:
        if sys.argv[1:] == [FROM_TOPIC]:
            run_requests(spark, settings)
        else:
            run(spark, settings, sys.argv[1:])
    except (ValueError, UnknownCustomer) as exc:
        print(f"erasure: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except TracesLeft as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main_batch(JOB, _main, checks=(preflight.storage,))
