"""Gold customer 360, maintained incrementally from silver's change data feed.

A batch of CDF rows becomes per-customer *changes* (latest profile; order and engagement deltas
signed by change type), which are applied to the current gold rows of just the touched customers.
The work per batch is proportional to the batch, not to the table.

Behavioural lifecycle stage (the one place these rules live; README and DEMO quote them):
  prospect    no orders yet
  churn-risk  has ordered, but not in the last 60 days
  evangelist  5+ orders, last order within 30 days, engagement rate >= 0.5
  customer    everyone else who has ordered
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

CHURN_RISK_AFTER_DAYS = 60
EVANGELIST_MIN_ORDERS = 5
EVANGELIST_MAX_RECENCY_DAYS = 30
EVANGELIST_MIN_ENGAGEMENT = 0.5

PROFILE_FIELDS = ["email", "first_name", "last_name", "created_at", "lifecycle_stage", "is_active", "phone"]

C360_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.StringType(), False),
        T.StructField("email", T.StringType()),
        T.StructField("first_name", T.StringType()),
        T.StructField("last_name", T.StringType()),
        T.StructField("created_at", T.TimestampType()),
        T.StructField("lifecycle_stage", T.StringType()),
        T.StructField("is_active", T.BooleanType()),
        T.StructField("phone", T.StringType()),
        T.StructField("profile_updated_at", T.TimestampType()),
        T.StructField("order_count", T.LongType(), False),
        T.StructField("lifetime_value", T.DoubleType(), False),
        T.StructField("avg_order_value", T.DoubleType()),
        T.StructField("first_order_at", T.TimestampType()),
        T.StructField("last_order_at", T.TimestampType()),
        T.StructField("recency_days", T.IntegerType()),
        T.StructField("tenure_days", T.IntegerType()),
        T.StructField("orders_per_30d", T.DoubleType()),
        T.StructField("activations_delivered", T.LongType(), False),
        T.StructField("activations_failed", T.LongType(), False),
        T.StructField("engagement_rate", T.DoubleType()),
        T.StructField("last_engagement_at", T.TimestampType()),
        T.StructField("behavioural_stage", T.StringType(), False),
        T.StructField("updated_at", T.TimestampType(), False),
    ]
)
C360_COLUMNS = [f.name for f in C360_SCHEMA.fields]

_POSITIVE = ("insert", "update_postimage")
_NEGATIVE = ("delete", "update_preimage")


def _sign() -> Column:
    return F.when(F.col("_change_type").isin(*_POSITIVE), 1).when(F.col("_change_type").isin(*_NEGATIVE), -1)


def behavioural_stage(order_count: Column, recency_days: Column, engagement_rate: Column) -> Column:
    """The documented rules above, as one Column expression."""
    return (
        F.when(order_count <= 0, F.lit("prospect"))
        .when(recency_days > CHURN_RISK_AFTER_DAYS, F.lit("churn-risk"))
        .when(
            (order_count >= EVANGELIST_MIN_ORDERS)
            & (recency_days <= EVANGELIST_MAX_RECENCY_DAYS)
            & (F.coalesce(engagement_rate, F.lit(0.0)) >= EVANGELIST_MIN_ENGAGEMENT),
            F.lit("evangelist"),
        )
        .otherwise(F.lit("customer"))
    )


def profile_changes(customers_cdf: DataFrame) -> DataFrame:
    """Latest profile per customer among the batch's inserts and post-images."""
    rows = customers_cdf.where(F.col("_change_type").isin(*_POSITIVE))
    window = Window.partitionBy("customer_id").orderBy(F.col("updated_at").desc(), F.col("_commit_version").desc())
    return (
        rows.withColumn("_rn", F.row_number().over(window))
        .where("_rn = 1")
        .select("customer_id", *PROFILE_FIELDS, F.col("updated_at").alias("profile_updated_at"))
    )


def order_deltas(orders_cdf: DataFrame) -> DataFrame:
    sign = _sign()
    return (
        orders_cdf.where(sign.isNotNull())
        .groupBy("customer_id")
        .agg(
            F.sum(sign).cast("long").alias("d_orders"),
            F.sum(sign * F.col("order_total")).alias("d_value"),
            F.min(F.when(sign > 0, F.col("placed_at"))).alias("d_first_order_at"),
            F.max(F.when(sign > 0, F.col("placed_at"))).alias("d_last_order_at"),
        )
    )


def activation_deltas(activations_cdf: DataFrame) -> DataFrame:
    sign = _sign()
    delivered = F.col("status") == "delivered"
    failed = F.col("status").isin("failed", "bounced")
    return (
        activations_cdf.where(sign.isNotNull())
        .groupBy("customer_id")
        .agg(
            F.sum(F.when(delivered, sign).otherwise(0)).cast("long").alias("d_delivered"),
            F.sum(F.when(failed, sign).otherwise(0)).cast("long").alias("d_failed"),
            F.max(F.when(delivered & (sign > 0), F.col("delivered_at"))).alias("d_last_engagement_at"),
        )
    )


def changes(profiles: DataFrame, orders: DataFrame, activations: DataFrame) -> DataFrame:
    """One row per touched customer: profile (or nulls) and deltas (or nulls)."""
    return profiles.join(orders, "customer_id", "full_outer").join(activations, "customer_id", "full_outer")


def _latest(a: Column, b: Column) -> Column:
    return F.greatest(a, b)  # greatest/least skip nulls


CHANGE_COLUMNS = {
    **{name: C360_SCHEMA[name].dataType.simpleString() for name in PROFILE_FIELDS},
    "profile_updated_at": "timestamp",
    "d_orders": "bigint", "d_value": "double", "d_first_order_at": "timestamp", "d_last_order_at": "timestamp",
    "d_delivered": "bigint", "d_failed": "bigint", "d_last_engagement_at": "timestamp",
}


def apply_changes(current: DataFrame, change_rows: DataFrame, as_of: Column) -> DataFrame:
    """New gold rows for the touched customers: current row (if any) + changes, derived columns recomputed.
    A change frame may carry only some kinds of change; the others count as none."""
    for name, sql_type in CHANGE_COLUMNS.items():
        if name not in change_rows.columns:
            change_rows = change_rows.withColumn(name, F.lit(None).cast(sql_type))
    cur = current.select(*[F.col(c).alias(f"c_{c}") for c in C360_COLUMNS])
    joined = change_rows.join(cur, change_rows["customer_id"] == cur["c_customer_id"], "left")

    def prof(name: str) -> Column:
        # A newer profile replaces the stored one; profile fields move together.
        newer = F.col("profile_updated_at").isNotNull() & (
            F.col("c_profile_updated_at").isNull() | (F.col("profile_updated_at") >= F.col("c_profile_updated_at"))
        )
        return F.when(newer, F.col(name)).otherwise(F.col(f"c_{name}"))

    order_count = F.coalesce(F.col("c_order_count"), F.lit(0)) + F.coalesce(F.col("d_orders"), F.lit(0))
    lifetime_value = F.coalesce(F.col("c_lifetime_value"), F.lit(0.0)) + F.coalesce(F.col("d_value"), F.lit(0.0))
    delivered = F.coalesce(F.col("c_activations_delivered"), F.lit(0)) + F.coalesce(F.col("d_delivered"), F.lit(0))
    failed = F.coalesce(F.col("c_activations_failed"), F.lit(0)) + F.coalesce(F.col("d_failed"), F.lit(0))
    staged = joined.select(
        F.col("customer_id"),
        *[prof(n).alias(n) for n in PROFILE_FIELDS],
        prof("profile_updated_at").alias("profile_updated_at"),
        order_count.cast("long").alias("order_count"),
        F.round(lifetime_value, 2).alias("lifetime_value"),
        F.least(F.col("c_first_order_at"), F.col("d_first_order_at")).alias("first_order_at"),
        _latest(F.col("c_last_order_at"), F.col("d_last_order_at")).alias("last_order_at"),
        delivered.cast("long").alias("activations_delivered"),
        failed.cast("long").alias("activations_failed"),
        _latest(F.col("c_last_engagement_at"), F.col("d_last_engagement_at")).alias("last_engagement_at"),
        as_of.alias("updated_at"),
    )
    return derive(staged)


def derive(staged: DataFrame) -> DataFrame:
    """Columns computed from the stored facts, recomputed whenever a row changes."""
    oc = F.col("order_count")
    recency = F.datediff(F.col("updated_at"), F.col("last_order_at"))
    tenure_start = F.coalesce(F.col("created_at"), F.col("first_order_at"))
    tenure = F.greatest(F.datediff(F.col("updated_at"), tenure_start), F.lit(0))
    sent = F.col("activations_delivered") + F.col("activations_failed")
    engagement = F.when(sent > 0, F.round(F.col("activations_delivered") / sent, 4))
    out = (
        staged.withColumn("avg_order_value", F.when(oc > 0, F.round(F.col("lifetime_value") / oc, 2)))
        .withColumn("recency_days", recency.cast("int"))
        .withColumn("tenure_days", tenure.cast("int"))
        .withColumn("orders_per_30d", F.round(oc * 30.0 / F.greatest(F.coalesce(tenure, F.lit(0)), F.lit(30)), 4))
        .withColumn("engagement_rate", engagement)
    )
    out = out.withColumn(
        "behavioural_stage", behavioural_stage(oc, F.col("recency_days"), F.col("engagement_rate"))
    )
    return out.select(*C360_COLUMNS)


def snapshot_changes(customers: DataFrame, orders: DataFrame, activations: DataFrame) -> DataFrame:
    """Whole silver tables read as if every row were a CDF insert (for a full rebuild or a point in time)."""

    def as_inserts(df: DataFrame) -> DataFrame:
        return df.withColumn("_change_type", F.lit("insert")).withColumn("_commit_version", F.lit(0).cast("long"))

    return changes(
        profile_changes(as_inserts(customers)), order_deltas(as_inserts(orders)), activation_deltas(as_inserts(activations))
    )


def empty_c360(spark) -> DataFrame:  # noqa: ANN001 - SparkSession
    return spark.createDataFrame([], C360_SCHEMA)
