"""Gold C360: silver change data feeds -> gold/c360, one row per customer (also those without orders).

One query over the union of the three silver CDF streams (one writer for the table). Each batch
turns its change rows into one change row per touched customer and MERGEs them idempotently; the
MERGE applies each change to the stored row (spark/transforms/gold.py ``new_row``).
"""

from __future__ import annotations

import dataclasses

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from spark import preflight, status, tables
from spark.entities import ACTIVATIONS, CUSTOMERS, ENTITIES, ORDERS
from spark.runtime import each_batch, main, with_trigger
from spark.settings import JobSettings
from spark.transforms import gold as T_gold

JOB = "gold"

# Only what the gold rules read travels through the union (the CDF rows are wide).
KEEP = {
    CUSTOMERS.silver: ["customer_id", "updated_at", *T_gold.PROFILE_FIELDS],
    ORDERS.silver: ["customer_id", "order_total", "placed_at"],
    ACTIVATIONS.silver: ["customer_id", "status", "delivered_at"],
}


NEWEST = "_newest_event_time"


class GoldBatch:
    """foreachBatch body. Recency and tenure are measured against event time: ``as_of`` is the newest
    event time the job has seen (a high-water mark), so replays of history and simulated data get
    the same answers as live traffic, and no wall clock enters the table."""

    def __init__(self, settings: JobSettings):
        self.path = settings.table("gold", "c360")
        self.app_id = f"{JOB}:c360"
        self.high_water = None
        self.status = status.publisher(settings, JOB)
        self.ledger = tables.Ledger()  # this run's writes: see tables.Ledger

    def _as_of(self, spark: SparkSession, newest):  # noqa: ANN001, ANN202 - datetime | None
        if self.high_water is None:
            self.high_water = spark.read.format("delta").load(self.path).agg(F.max("updated_at")).first()[0]
        candidates = [t for t in (self.high_water, newest) if t is not None]
        self.high_water = max(candidates) if candidates else None
        return self.high_water

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        batch = batch.persist()
        try:
            by = {name: batch.where(F.col("_entity") == name) for name in KEEP}
            change_rows = T_gold.changes(
                T_gold.profile_changes(by[CUSTOMERS.silver]),
                T_gold.order_deltas(by[ORDERS.silver]),
                T_gold.activation_deltas(by[ACTIVATIONS.silver]),
            )
            # Each touched customer's newest event time rides along, so that one aggregate over the
            # materialised rows gives both the batch's newest event time (for as_of) and the status
            # figures (it used to be one job over the CDF rows before the MERGE and one after).
            newest = batch.where(F.col("_change_type").isin("insert", "update_postimage")).groupBy("customer_id").agg(
                F.max(F.greatest("updated_at", "placed_at", "delivered_at")).alias(NEWEST)
            )
            # Materialised: the MERGE reads its source more than once, and the CDF rows behind it
            # are cached only for this call.
            change_rows = T_gold.with_change_columns(change_rows).join(newest, "customer_id", "left").localCheckpoint()
            found = change_rows.agg(F.max(NEWEST).alias(NEWEST),
                                    *status.aggregates(None, F.col("customer_id"))).first()
            as_of = self._as_of(spark, found[NEWEST])
            touched = status.from_row(found)
            as_of_col = F.lit(as_of).cast("timestamp") if as_of is not None else F.current_timestamp()
            update, insert = T_gold.merge_clauses(as_of_col)
            # No separate read of the stored rows: the MERGE's own join finds them (a scan of the key
            # column, then of the files holding touched customers), and with deletion vectors only
            # the touched customers' rows are written.
            merge = (
                DeltaTable.forPath(spark, self.path).alias("t")
                .merge(change_rows.alias("s"), "t.customer_id = s.customer_id")
                .whenMatchedUpdate(set=update)
                .whenNotMatchedInsert(values=insert)
            )
            if tables.merge_once(spark, self.path, self.app_id, batch_id, merge.execute, self.ledger):
                # Every row the MERGE wrote has updated_at = as_of: the newest event time in gold.
                self.status.publish("gold_c360", batch_id, dataclasses.replace(touched, newest_ms=status.millis(as_of)))
        finally:
            batch.unpersist()


def change_stream(spark: SparkSession, path: str, entity: str) -> DataFrame:
    return (
        spark.readStream.format("delta")
        .option("readChangeFeed", "true")
        .load(path)
        .select(*KEEP[entity], "_change_type", "_commit_version")
        .withColumn("_entity", F.lit(entity))
    )


def start(spark: SparkSession, settings: JobSettings) -> list[StreamingQuery]:
    for entity in ENTITIES:
        tables.wait_for(spark, settings.table("silver", entity.silver))
    tables.ensure(spark, settings.table("gold", "c360"), T_gold.C360_SCHEMA, tables.MERGED)
    streams = [change_stream(spark, settings.table("silver", e.silver), e.silver) for e in ENTITIES]
    union = streams[0]
    for other in streams[1:]:
        union = union.unionByName(other, allowMissingColumns=True)
    writer = (
        union.writeStream.queryName("gold_c360")
        .foreachBatch(each_batch("gold_c360", GoldBatch(settings)))
        .option("checkpointLocation", settings.checkpoint(JOB, "c360"))
    )
    return [with_trigger(writer, settings).start()]


if __name__ == "__main__":
    main(JOB, start, checks=(preflight.storage,))
