"""Gold batch cost against table size: one 1k-event micro-batch applied to gold/c360 holding 10k vs
200k customers, in one run. The incremental design should keep the ratio near 1. Delta's MERGE
metrics are printed beside the time: rows written and bytes added should not move with the table,
the scan (the one part of a MERGE that reads every file's key column) may.

The batch is what the gold query hands its foreachBatch (silver change-feed rows: 1,000 new orders
for existing customers); it runs through the job's own GoldBatch (per-customer changes, one MERGE).
Run: python -m bench.bench_gold [--sizes 10000,200000[,2000000]] [--batch 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from bench.spark_env import engines
from spark import tables
from spark.jobs.gold import KEEP, GoldBatch
from spark.settings import JobSettings
from spark.transforms import gold as T_gold

T0 = dt.datetime(2026, 1, 1)


def build_table(spark, path: str, customers: int) -> None:  # noqa: ANN001
    base = spark.range(customers).select(
        F.concat(F.lit("c"), F.col("id").cast("string")).alias("customer_id"),
        F.concat(F.lit("c"), F.col("id").cast("string"), F.lit("@example.com")).alias("email"),
        F.lit("First").alias("first_name"), F.lit("Last").alias("last_name"),
        F.lit(T0).cast("timestamp").alias("created_at"), F.lit("customer").alias("lifecycle_stage"),
        F.lit(True).alias("is_active"), F.lit(None).cast("string").alias("phone"),
        F.lit(T0).cast("timestamp").alias("profile_updated_at"),
        (F.col("id") % 7).alias("d_orders"), ((F.col("id") % 7) * 20.0).alias("d_value"),
        F.lit(T0 + dt.timedelta(days=2)).cast("timestamp").alias("d_first_order_at"),
        F.lit(T0 + dt.timedelta(days=30)).cast("timestamp").alias("d_last_order_at"),
        (F.col("id") % 5).alias("d_delivered"), (F.col("id") % 3).alias("d_failed"),
        F.lit(T0 + dt.timedelta(days=20)).cast("timestamp").alias("d_last_engagement_at"),
    )
    rows = T_gold.apply_changes(T_gold.empty_c360(spark), base, F.lit(T0 + dt.timedelta(days=40)).cast("timestamp"))
    tables.ensure(spark, path, T_gold.C360_SCHEMA, tables.MERGED)
    rows.repartition(4).write.format("delta").mode("append").save(path)


def order_batch(spark, customers: int, size: int, seed: int):  # noqa: ANN001, ANN201
    columns = sorted({c for cols in KEEP.values() for c in cols})
    picked = spark.range(size).select(
        F.concat(F.lit("c"), ((F.col("id") * 7919 + seed * 104729) % customers).cast("string")).alias("customer_id"),
        (F.col("id") % 90 + 10.0).alias("order_total"),
        F.lit(T0 + dt.timedelta(days=41)).cast("timestamp").alias("placed_at"),
    )
    frame = picked
    for name in columns:
        if name not in frame.columns:
            frame = frame.withColumn(name, F.lit(None).cast("string" if name != "updated_at" else "timestamp"))
    typed = frame.select(
        *[F.col(c) for c in columns if c not in {"created_at", "is_active", "delivered_at"}],
        F.lit(None).cast("timestamp").alias("created_at"), F.lit(None).cast("boolean").alias("is_active"),
        F.lit(None).cast("timestamp").alias("delivered_at"),
        F.lit("insert").alias("_change_type"), F.lit(1).cast("long").alias("_commit_version"),
        F.lit("orders").alias("_entity"),
    )
    return typed.localCheckpoint()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,200000")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    with engines(with_broker=False) as env:
        for n, customers in enumerate(sizes):
            settings = JobSettings.from_env({"DELTA_ROOT": str(env.root / f"gold{customers}")})
            path = settings.table("gold", "c360")
            build_table(env.spark, path, customers)
            job = GoldBatch(settings)
            timings, metrics = [], []
            for r in range(args.repeat + 1):  # the first batch warms up caches and code paths
                batch = order_batch(env.spark, customers, args.batch, seed=r)
                start = time.perf_counter()
                job(batch, n * 100 + r)
                if r:
                    timings.append(time.perf_counter() - start)
                    metrics.append(merge_metrics(env.spark, path))
            total = env.spark.read.format("delta").load(path).count()
            assert total == customers, f"gold rows changed from {customers} to {total}"
            results[customers] = (statistics.median(timings), metrics[-1])
    print(f"gold: one {args.batch}-order micro-batch (median of {args.repeat}, local[2]); MERGE metrics of the last:")
    print(f"  {'customers':>10} {'batch':>8} {'updated':>8} {'copied':>7} {'written':>9} {'scan':>7} {'rewrite':>8}")
    for customers in sizes:
        seconds, m = results[customers]
        print(f"  {customers:>10} {seconds:7.2f}s {m['numTargetRowsUpdated']:>8} {m['numTargetRowsCopied']:>7} "
              f"{int(m['numTargetBytesAdded']) / 1024:7.0f}KB {int(m['scanTimeMs']) / 1000:6.2f}s "
              f"{int(m['rewriteTimeMs']) / 1000:7.2f}s")
    for customers in sizes[1:]:
        print(f"  ratio {customers}/{sizes[0]} = {results[customers][0] / results[sizes[0]][0]:.2f}"
              f"  (table {customers / sizes[0]:.0f}x larger)")


def merge_metrics(spark, path: str) -> dict:  # noqa: ANN001
    """Delta's own figures for the batch's MERGE: rows copied 0 = only touched rows were written."""
    recent = DeltaTable.forPath(spark, path).history(5).select("operation", "operationMetrics").collect()
    # An auto compaction may have committed after the MERGE.
    return next(r.operationMetrics for r in recent if r.operation == "MERGE")


if __name__ == "__main__":
    main()
