"""Delta table plumbing: create-if-missing with properties, wait for an upstream table, idempotent MERGE."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

log = logging.getLogger(__name__)

CDF = {"delta.enableChangeDataFeed": "true"}


def exists(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def ensure(spark: SparkSession, path: str, schema: T.StructType, properties: dict[str, str] | None = None) -> None:
    """Create an empty table with this schema unless one is there (only the table's writer calls this)."""
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()


def wait_for(spark: SparkSession, path: str, timeout_s: float | None = None, poll_s: float = 5.0) -> None:
    """Block until an upstream job has created ``path`` (jobs start in any order in the cluster)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    announced = False
    while not exists(spark, path):
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"Delta table {path} did not appear within {timeout_s:.0f}s")
        if not announced:
            log.info("waiting for upstream table %s", path)
            announced = True
        time.sleep(poll_s)


@contextlib.contextmanager
def idempotent(spark: SparkSession, app_id: str, version: int) -> Iterator[None]:
    """Delta skips a DML commit whose (txnAppId, txnVersion) it has already seen: a replayed
    micro-batch after a crash does not apply twice. Set on the stream's own session clone."""
    spark.conf.set("spark.databricks.delta.write.txnAppId", app_id)
    spark.conf.set("spark.databricks.delta.write.txnVersion", str(version))
    try:
        yield
    finally:
        spark.conf.unset("spark.databricks.delta.write.txnAppId")
        spark.conf.unset("spark.databricks.delta.write.txnVersion")


def append_once(df: DataFrame, path: str, app_id: str, version: int, merge_schema: bool = True) -> None:
    """Idempotent append (Delta writer options txnAppId/txnVersion)."""
    (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .option("mergeSchema", str(merge_schema).lower())
        .save(path)
    )
