"""Propensity features and labels, built with the same functions as gold so training, scoring and
the live table agree.

Label (documented): 1 when the customer places at least one order in the ``window_days`` after the
feature cutoff, else 0. Training uses the published history only: features as of
``cutoff - window``, labels from ``[cutoff - window, cutoff)``; evaluation scores features as of the
seed's cutoff against the seed's hidden future-window label.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark.transforms import gold

FEATURES = [
    "order_count",
    "log_lifetime_value",
    "avg_order_value",
    "recency_days",
    "tenure_days",
    "orders_per_30d",
    "activations_delivered",
    "activations_failed",
    "engagement_rate",
    "has_ordered",
    "active",
]
NO_ORDER_RECENCY = 365  # recency of a customer who never ordered: "long ago"


def features(c360: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    """Gold C360 rows -> customer_id, behavioural_stage and numeric, null-free features (and the
    columns named in ``keep``, unchanged)."""
    return c360.select(
        "customer_id",
        "behavioural_stage",
        *keep,
        F.col("order_count").cast("double").alias("order_count"),
        F.log1p(F.col("lifetime_value")).alias("log_lifetime_value"),
        F.coalesce(F.col("avg_order_value"), F.lit(0.0)).alias("avg_order_value"),
        F.least(F.coalesce(F.col("recency_days"), F.lit(NO_ORDER_RECENCY)), F.lit(NO_ORDER_RECENCY))
        .cast("double").alias("recency_days"),
        F.coalesce(F.col("tenure_days"), F.lit(0)).cast("double").alias("tenure_days"),
        F.coalesce(F.col("orders_per_30d"), F.lit(0.0)).alias("orders_per_30d"),
        F.col("activations_delivered").cast("double").alias("activations_delivered"),
        F.col("activations_failed").cast("double").alias("activations_failed"),
        F.coalesce(F.col("engagement_rate"), F.lit(0.0)).alias("engagement_rate"),
        (F.col("order_count") > 0).cast("double").alias("has_ordered"),
        F.coalesce(F.col("is_active"), F.lit(True)).cast("double").alias("active"),
    )


def c360_as_of(customers: DataFrame, orders: DataFrame, activations: DataFrame, cutoff: dt.datetime) -> DataFrame:
    """Gold rows as they would have been at ``cutoff`` (events strictly before it)."""
    before = F.lit(cutoff)
    change_rows = gold.snapshot_changes(
        customers.where(F.col("created_at") < before),
        orders.where(F.col("placed_at") < before),
        activations.where(F.col("delivered_at") < before),
    )
    current = gold.empty_c360(customers.sparkSession)
    return gold.apply_changes(current, change_rows, before.cast("timestamp"))


def labels(orders: DataFrame, start: dt.datetime, window_days: int) -> DataFrame:
    end = start + dt.timedelta(days=window_days)
    return (
        orders.where((F.col("placed_at") >= F.lit(start)) & (F.col("placed_at") < F.lit(end)))
        .select("customer_id")
        .distinct()
        .withColumn("label", F.lit(1.0))
    )


def training_set(
    customers: DataFrame, orders: DataFrame, activations: DataFrame, cutoff: dt.datetime, window_days: int
) -> DataFrame:
    feature_time = cutoff - dt.timedelta(days=window_days)
    feats = features(c360_as_of(customers, orders, activations, feature_time))
    return feats.join(labels(orders, feature_time, window_days), "customer_id", "left").fillna({"label": 0.0})


def rfm_score(feats: DataFrame) -> Column:
    """The simple RFM heuristic baseline: mean of recency, frequency and monetary percentile ranks."""
    w = Window.orderBy
    r = 1 - F.percent_rank().over(w(F.col("recency_days").asc()))
    f = F.percent_rank().over(w(F.col("orders_per_30d").asc()))
    m = F.percent_rank().over(w(F.col("log_lifetime_value").asc()))
    return (r + f + m) / 3
