"""Silver: in-batch dedup before the MERGE, and the MERGE rules per entity.

customers   latest profile per customer by event time (updated_at), then Kafka offset
orders      one row per order_id (re-sent duplicates dropped; the first seen wins)
activations latest status per activation_id by delivered_at, then offset
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark.entities import ORDERS, Entity


def to_silver_columns(bronze: DataFrame) -> DataFrame:
    """Contract fields plus the source position used for tie-breaks and lineage."""
    drop = {"key", "topic", "schema_id"}
    return bronze.select(*[c for c in bronze.columns if c not in drop])


def dedup(batch: DataFrame, entity: Entity) -> DataFrame:
    """One row per entity id within a batch, the one the MERGE should see."""
    if entity is ORDERS:
        order = [F.col("offset").asc(), F.col("partition").asc()]  # first seen wins: a re-send is a copy
    else:
        order = [F.col(entity.event_time).desc(), F.col("offset").desc()]
    window = Window.partitionBy(entity.id_column).orderBy(*order)
    return batch.withColumn("_rn", F.row_number().over(window)).where("_rn = 1").drop("_rn")


def merge_condition(entity: Entity) -> str:
    return f"t.{entity.id_column} = s.{entity.id_column}"


def newer_condition(entity: Entity) -> str | None:
    """When a matched row is replaced; None: never (orders are immutable facts)."""
    if entity is ORDERS:
        return None
    ts = entity.event_time
    return f"s.{ts} > t.{ts} OR (s.{ts} = t.{ts} AND s.offset > t.offset)"

