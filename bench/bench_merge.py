"""The floor of one small MERGE on a warm JVM, and what each Delta / Spark setting does to it.

A silver-sized table (``--rows`` customers, the silver tables' properties: change data feed, deletion
vectors, auto compaction) takes ``--rounds`` MERGEs of a 2-row source (one update, one insert), as a
silver micro-batch does. Each variant has its own table and the variants take turns round by round, so
a load spike hits all of them. Per variant it prints, as medians over the rounds after ``--warm``:

  * the MERGE's wall time from Python, and the Spark jobs it launched (Spark's status store);
  * Delta's own operation metrics of the commit: executionTimeMs (the command up to its commit),
    scanTimeMs (finding touched files), rewriteTimeMs (writing);
  * ``after``: wall minus executionTimeMs, i.e. the commit and its post-commit hooks (checksum,
    checkpoint every 10 commits, auto compaction) plus the Python round trip;
  * ``cpu``: the JVM's CPU seconds during the MERGE (all its threads, from /proc): what a MERGE costs
    the other queries when they share the cores, as they do on a laptop;
  * ``compiles``: the classes Spark's code generation compiled during the MERGE (Janino; its time is
    part of ``cpu``).

Run: python -m bench.bench_merge [--rounds 14] [--warm 4] [--rows 300] [--variants a,b,...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from bench.spark_env import JvmMeter, conf_option, engines
from spark import tables

T0 = dt.datetime(2026, 1, 1)


@dataclass
class Variant:
    name: str
    conf: dict[str, str] = field(default_factory=dict)  # session SQL conf set around each MERGE
    properties: dict[str, str] = field(default_factory=lambda: dict(tables.MERGED))
    materialise: Callable[[DataFrame], DataFrame] = lambda df: df.localCheckpoint()  # as silver does


VARIANTS = {v.name: v for v in (
    Variant("as-deployed"),
    Variant("no-auto-compaction", properties={**tables.CDF, "delta.enableDeletionVectors": "true"}),
    Variant("no-checksum-file", conf={"spark.databricks.delta.writeChecksumFile.enabled": "false"}),
    Variant("no-cdf", properties={**tables.APPENDED, "delta.enableDeletionVectors": "true"}),
    Variant("no-deletion-vectors", properties={**tables.APPENDED, **tables.CDF}),
    Variant("aqe-off", conf={"spark.sql.adaptive.enabled": "false"}),
    Variant("source-not-materialised", materialise=lambda df: df),
    Variant("codegen-off", conf={"spark.sql.codegen.wholeStage": "false"}),
    Variant("no-stats", conf={"spark.databricks.delta.stats.collect": "false"}),
    Variant("checkpoint-every-100", properties={**tables.MERGED, "delta.checkpointInterval": "100"}),
)}


def customers(spark: SparkSession, ids: list[int], updated: dt.datetime) -> DataFrame:
    return spark.createDataFrame(
        [(f"c{i}", f"c{i}@example.com", "First", "Last", updated, "customer", True, None, i * 10) for i in ids],
        "customer_id string, email string, first_name string, last_name string, updated_at timestamp, "
        "lifecycle_stage string, is_active boolean, phone string, offset long",
    )


def build(spark: SparkSession, path: str, variant: Variant, rows: int) -> None:
    schema = customers(spark, [0], T0).schema
    tables.ensure(spark, path, schema, variant.properties)
    customers(spark, list(range(rows)), T0).coalesce(1).write.format("delta").mode("append").save(path)


def merge(spark: SparkSession, path: str, variant: Variant, round_no: int, rows: int) -> None:
    source = variant.materialise(customers(spark, [round_no % rows, rows + round_no], T0 + dt.timedelta(hours=round_no + 1)))
    (
        DeltaTable.forPath(spark, path).alias("t").merge(source.alias("s"), "t.customer_id = s.customer_id")
        .whenMatchedUpdateAll(condition="s.updated_at > t.updated_at").whenNotMatchedInsertAll().execute()
    )


def job_count(spark: SparkSession) -> int:
    return spark.sparkContext._jsc.sc().statusStore().jobsList(None).size()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=14)
    parser.add_argument("--warm", type=int, default=4, help="rounds left out of the medians (JIT warm-up)")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    conf_option(parser)
    args = parser.parse_args(argv)
    chosen = [VARIANTS[name] for name in args.variants.split(",")]
    figures: dict[str, dict[str, list[float]]] = {v.name: {} for v in chosen}
    print(f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    with engines(with_broker=False, extra_conf={"spark.ui.retainedJobs": "100000", **dict(args.conf)}) as env:
        spark = env.spark
        meter = JvmMeter(spark)
        paths = {v.name: str(env.root / v.name) for v in chosen}
        for v in chosen:
            build(spark, paths[v.name], v, args.rows)
        for round_no in range(args.rounds):
            for v in chosen:
                for key, value in v.conf.items():
                    spark.conf.set(key, value)
                jobs0, (cpu0, c0), t0 = job_count(spark), meter.read(), time.perf_counter()
                try:
                    merge(spark, paths[v.name], v, round_no, args.rows)
                finally:
                    for key in v.conf:
                        spark.conf.unset(key)
                wall, jobs = time.perf_counter() - t0, job_count(spark) - jobs0
                cpu1, c1 = meter.read()
                cpu, compiled = cpu1 - cpu0, c1 - c0
                if round_no < args.warm:
                    continue
                last = DeltaTable.forPath(spark, paths[v.name]).history(2).collect()
                merge_commit = next(r for r in last if r.operation == "MERGE")
                m = {k: float(x) / 1000 for k, x in merge_commit.operationMetrics.items() if k.endswith("TimeMs")}
                got = figures[v.name]
                for key, value in (("wall", wall), ("jobs", jobs), ("execution", m.get("executionTimeMs", 0.0)),
                                   ("scan", m.get("scanTimeMs", 0.0)), ("rewrite", m.get("rewriteTimeMs", 0.0)),
                                   ("after", wall - m.get("executionTimeMs", 0.0)),
                                   ("cpu", cpu), ("compiles", compiled)):
                    got.setdefault(key, []).append(value)
            print(f"round {round_no + 1}/{args.rounds} done, load {os.getloadavg()[0]:.1f}", flush=True)
        files = {v.name: len(spark.read.format("delta").load(paths[v.name]).inputFiles()) for v in chosen}
    base = statistics.median(figures[chosen[0].name]["wall"])
    print(f"\none {args.rows}-row table per variant, 2-row MERGE (1 update, 1 insert), {args.rounds - args.warm} "
          f"rounds after {args.warm} warm-up, variants in turn; medians, seconds; load at end {os.getloadavg()[0]:.1f}")
    print(f"  {'variant':26} {'wall':>6} {'x base':>7} {'jobs':>5} {'exec':>6} {'scan':>6} {'rewrite':>7} {'after':>6} {'cpu':>5} {'compiles':>8} {'files':>5}")
    for v in chosen:
        f = {k: statistics.median(vals) for k, vals in figures[v.name].items()}
        print(f"  {v.name:26} {f['wall']:6.2f} {f['wall'] / base:7.2f} {f['jobs']:5.0f} {f['execution']:6.2f} "
              f"{f['scan']:6.2f} {f['rewrite']:7.2f} {f['after']:6.2f} {f['cpu']:5.2f} {f['compiles']:8.0f} {files[v.name]:5d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
