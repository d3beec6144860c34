"""The one way a SparkSession is built: Delta extensions, local jars, sane small-cluster defaults.

Jars come from the image (/opt/spark/jars) in the cluster and from ``make jars`` locally
(``SPARK_JARS_DIR``); never from ``spark.jars.packages``/Ivy at run time.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

# Room for the four jobs' generated classes in one session (543 compiled in all when measured); what the
# larger cache costs the drivers' memory is in docs/freshness.md ("What it costs in memory").
CODEGEN_CACHE_ENTRIES = 1000

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def local_jars(jars_dir: str | Path | None) -> list[str]:
    if not jars_dir:
        return []
    directory = Path(jars_dir)
    jars = sorted(str(p) for p in directory.glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no jars in {directory}: run `make jars`")
    return jars


def build_session(
    app_name: str,
    *,
    master: str | None = None,
    jars_dir: str | Path | None = None,
    shuffle_partitions: int = 1,
    extra_conf: dict[str, str] | None = None,
) -> SparkSession:
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    conf = {
        **DELTA_CONF,
        # A streaming micro-batch holds a handful to a few thousand records: one partition after a
        # shuffle is plenty (a catch-up batch of 50,000 records still takes seconds). A 2-row MERGE
        # into a small CDF + deletion-vector table on two busy cores: p50 21 s with 2 partitions,
        # 9 s with 1 (docs/freshness.md). Adaptive execution stays on: without it a MERGE writes one
        # file per shuffle partition, and Delta's auto compaction then rewrites them in a commit of
        # its own.
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        # Delta rebuilds a table's file list with a Spark job of 50 tasks by default: on a laptop's
        # two cores that was half of every gold micro-batch (8.5 s -> 4.4 s, bench/bench_gold.py).
        # Our tables' logs are small; as many tasks as shuffle partitions is plenty.
        "spark.databricks.delta.snapshotPartitions": str(shuffle_partitions),
        # Spark keeps the classes its code generation compiled in a cache of 100 entries (static conf).
        # A streaming job's batch needs more than that (one MERGE with a change feed and deletion
        # vectors alone compiles ~40), so at 100 every batch compiled its classes again: 354 compiles
        # and 16.3 s of JVM CPU per probe across the four jobs, against 8 and 9.4 s with room for them
        # (bench/bench_batch_profile.py; docs/freshness.md).
        "spark.sql.codegen.cache.maxEntries": str(CODEGEN_CACHE_ENTRIES),
        "spark.sql.session.timeZone": "UTC",
        # Schema evolution of source Avro (a new optional field) reaches Delta through MERGE.
        "spark.databricks.delta.schema.autoMerge.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        # Spark 4.1.1's Kafka V2 micro-batch source throws a NullPointerException in its progress
        # metrics when a restarted query replays a planned batch (SPARK-55271): a streaming job
        # could never recover from a mid-batch stop. The V1 Kafka source has no such path.
        "spark.sql.streaming.disabledV2MicroBatchReaders": "org.apache.spark.sql.kafka010.KafkaSourceProvider",
        **(extra_conf or {}),
    }
    jars = local_jars(jars_dir)
    if jars:
        conf["spark.jars"] = ",".join(jars)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    _require_delta(spark)
    return spark


class MissingJarsError(RuntimeError):
    """Spark started without the Delta / Kafka / Avro jars."""


def _require_delta(spark: SparkSession) -> None:
    # Without the jars Spark only logs a ClassNotFoundException for the extension and fails much
    # later on the first Delta read; say what is wrong at start instead.
    try:
        spark.sparkContext._jvm.java.lang.Class.forName(  # type: ignore[union-attr]
            "io.delta.sql.DeltaSparkSessionExtension", False, spark.sparkContext._jvm.Thread.currentThread().getContextClassLoader()  # type: ignore[union-attr]
        )
    except Exception:
        spark.stop()
        raise MissingJarsError(
            "Delta Lake is not on Spark's classpath: set SPARK_JARS_DIR to the jars `make jars` resolves "
            "(.cache/jars/spark), or run in the marketing-engine/spark image"
        ) from None
