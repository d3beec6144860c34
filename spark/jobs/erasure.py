"""Erasure: forget customers in every Delta table the jobs write (``python -m spark.jobs.erasure <id> ...``).

For each requested customer id, in every table (bronze customer_profile / order_placed /
activation_status, quarantine, silver customers / orders / activations, gold c360, gold propensity):

1. DELETE its rows. Bronze and silver hold the raw personal fields; gold c360 copies the profile;
   quarantine holds raw bytes, so a quarantined record goes when its key is the id or its value bytes
   contain the id's text (an undecodable record has no customer_id column to match).
2. REORG TABLE ... APPLY (PURGE): with deletion vectors on (the MERGEd tables), DELETE only marks the
   rows; the purge rewrites the files that still hold them.
3. VACUUM ... RETAIN 0 HOURS: the rewritten-away files and the change data feed files (``_change_data``,
   where the DELETE itself wrote the deleted rows as ``delete`` changes) are removed from storage now,
   not after Delta's 7-day default. This needs ``retentionDurationCheck`` off, and is safe only when no
   reader still needs those files: a streaming reader behind the erasure's commits (gold on silver's
   feed, score on gold's) would fail on a missing file. Run it when the streaming jobs have caught up
   (docs/forget.md says how and what stays in _delta_log).

Every step is idempotent: erasing a customer twice deletes nothing the second time. Each run appends
what it erased (customer, table, rows, when) to the erasure report table ``<DELTA_ROOT>/erasure/report``,
which names customer ids only: a later request for an id no table holds says whether it was erased
before (and when) or was never known.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from spark import preflight, tables
from spark.entities import ENTITIES
from spark.runtime import main_batch
from spark.settings import JobSettings
from webapp.model import valid_customer_id

log = logging.getLogger(__name__)
JOB = "erasure"
RETAIN_HOURS = 0  # see the module doc: files holding erased rows must leave storage now, not in 7 days
REPORT_SCHEMA = T.StructType([
    T.StructField("customer_id", T.StringType(), False),
    T.StructField("store", T.StringType(), False),  # layer/table
    T.StructField("rows", T.LongType(), False),
    T.StructField("erased_at", T.TimestampType(), False),
])


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


def erase_store(spark: SparkSession, path: str, store: Store, ids: list[str]) -> dict[str, int]:
    """DELETE, purge, vacuum one table; rows deleted per id."""
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
    table = f"delta.`{path}`"
    # Both run even when nothing matched now: a run that failed after its DELETE left files to clean.
    spark.sql(f"REORG TABLE {table} APPLY (PURGE)")
    spark.sql(f"VACUUM {table} RETAIN {RETAIN_HOURS} HOURS")
    return found


def run(spark: SparkSession, settings: JobSettings, ids: list[str]) -> list[str]:
    """Erase ``ids`` from every table; returns the lines printed (one per id). UnknownCustomer when an id
    is neither in a table nor in the report."""
    bad = [i for i in ids if not valid_customer_id(i)]
    if bad or not ids:
        raise ValueError(f"not a customer id: {bad[0]!r}" if bad else "no customer id given")
    ids = list(dict.fromkeys(ids))
    # A VACUUM with less than the table's retention is refused unless this check is off (this session only).
    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    # VACUUM lists a table's files with this many tasks (Spark's default: 10,000 per table, minutes on
    # 2 cores for tables of a few files); the cores the session has are enough.
    spark.conf.set("spark.sql.sources.parallelPartitionDiscovery.parallelism",
                   str(max(2, spark.sparkContext.defaultParallelism)))
    report_path = settings.table("erasure", "report")
    tables.ensure(spark, report_path, REPORT_SCHEMA, tables.APPENDED)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    erased: dict[str, dict[str, int]] = {i: {} for i in ids}
    for store in STORES:
        path = settings.table(store.layer, store.name)
        if not tables.exists(spark, path):
            log.info("%s: no table at %s (that job has not run): nothing to erase there", store.label, path)
            continue
        for customer_id, n in erase_store(spark, path, store, ids).items():
            erased[customer_id][store.label] = n
    rows = [(i, label, n, now) for i, per in erased.items() for label, n in per.items() if n]
    earlier = {r.customer_id: r.last for r in spark.read.format("delta").load(report_path)
               .where(F.col("customer_id").isin(ids) & (F.col("rows") > 0))
               .groupBy("customer_id").agg(F.max("erased_at").alias("last")).collect()}
    if rows:
        spark.createDataFrame(rows, REPORT_SCHEMA).write.format("delta").mode("append").save(report_path)
    lines, unknown = [], []
    for i in ids:
        done = {k: v for k, v in erased[i].items() if v}
        if done:
            lines.append(f"erasure: customer {i}: deleted " + ", ".join(f"{k} {v}" for k, v in done.items())
                         + f"; files rewritten and vacuumed (retain {RETAIN_HOURS} h)")
        elif i in earlier:
            lines.append(f"erasure: customer {i}: nothing left to erase (erased on {earlier[i]:%Y-%m-%d %H:%M:%S} UTC)")
        else:
            unknown.append(i)
    for line in lines:
        print(line, flush=True)
    if unknown:
        raise UnknownCustomer(f"unknown customer id {', '.join(unknown)}: no Delta table under {settings.delta_root} "
                              f"({settings.env_name('delta_root')}) holds it and it was never erased")
    return lines


def _main(spark: SparkSession, settings: JobSettings) -> None:
    try:
        run(spark, settings, sys.argv[1:])
    except (ValueError, UnknownCustomer) as exc:
        print(f"erasure: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main_batch(JOB, _main, checks=(preflight.storage,))
