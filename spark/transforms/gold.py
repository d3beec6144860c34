"""Gold customer 360, maintained incrementally from silver's change data feed.

A batch of CDF rows becomes per-customer *changes* (latest profile; order and engagement deltas
signed by change type), which are applied to the stored gold rows of just the touched customers:
:func:`new_row` says how, once, as expressions over the stored row and the change row, so the gold
job can apply a batch inside one MERGE (no read of the table besides the MERGE's own, and only
the touched rows are written) while small-frame tests and training evaluate the same expressions on a join.

Behavioural lifecycle stage (the one place these rules live; README and DEMO quote them):
  prospect    no orders yet
  churn-risk  has ordered, but not in the last 60 days
  evangelist  5+ orders, last order within 30 days, engagement rate >= 0.5
  customer    everyone else who has ordered
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
# Not "delete": silver deletes a row only when a customer is forgotten (spark/jobs/erasure.py), and that
# job deletes the customer's gold rows itself. Subtracting the deleted orders would bring the forgotten
# customer back into gold as a row of negative counts.
_NEGATIVE = ("update_preimage",)


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


CHANGE_COLUMNS = {
    **{name: C360_SCHEMA[name].dataType.simpleString() for name in PROFILE_FIELDS},
    "profile_updated_at": "timestamp",
    "d_orders": "bigint", "d_value": "double", "d_first_order_at": "timestamp", "d_last_order_at": "timestamp",
    "d_delivered": "bigint", "d_failed": "bigint", "d_last_engagement_at": "timestamp",
}

Lookup = Callable[[str], Column]


def new_row(stored: Lookup, change: Lookup, as_of: Column) -> dict[str, Column]:
    """Every gold column of a touched customer, as an expression over its stored gold row
    (``stored("order_count")``; nulls for a customer new to gold) and its change row
    (``change("d_orders")``). The one definition of how a change is applied: :func:`apply_changes`
    evaluates it on a join, the gold job hands it to the MERGE as its update and insert clauses.
    Every column but the key, ``customer_id``."""

    def prof(name: str) -> Column:
        # A newer profile replaces the stored one; profile fields move together.
        newer = change("profile_updated_at").isNotNull() & (
            stored("profile_updated_at").isNull() | (change("profile_updated_at") >= stored("profile_updated_at"))
        )
        return F.when(newer, change(name)).otherwise(stored(name))

    def plus(name: str, delta: str, zero: Column) -> Column:
        return F.coalesce(stored(name), zero) + F.coalesce(change(delta), zero)

    # greatest/least skip nulls: a side with no value leaves the other's.
    staged = {
        **{name: prof(name) for name in [*PROFILE_FIELDS, "profile_updated_at"]},
        "order_count": plus("order_count", "d_orders", F.lit(0)).cast("long"),
        "lifetime_value": F.round(plus("lifetime_value", "d_value", F.lit(0.0)), 2),
        "first_order_at": F.least(stored("first_order_at"), change("d_first_order_at")),
        "last_order_at": F.greatest(stored("last_order_at"), change("d_last_order_at")),
        "activations_delivered": plus("activations_delivered", "d_delivered", F.lit(0)).cast("long"),
        "activations_failed": plus("activations_failed", "d_failed", F.lit(0)).cast("long"),
        "last_engagement_at": F.greatest(stored("last_engagement_at"), change("d_last_engagement_at")),
        "updated_at": as_of,
    }
    return derived(staged)


def derived(staged: Mapping[str, Column]) -> dict[str, Column]:
    """Add the columns computed from the stored facts, recomputed whenever a row changes."""
    oc, as_of = staged["order_count"], staged["updated_at"]
    recency = F.datediff(as_of, staged["last_order_at"])
    tenure = F.greatest(F.datediff(as_of, F.coalesce(staged["created_at"], staged["first_order_at"])), F.lit(0))
    sent = staged["activations_delivered"] + staged["activations_failed"]
    engagement = F.when(sent > 0, F.round(staged["activations_delivered"] / sent, 4))
    out = {
        **staged,
        "avg_order_value": F.when(oc > 0, F.round(staged["lifetime_value"] / oc, 2)),
        "recency_days": recency.cast("int"),
        "tenure_days": tenure.cast("int"),
        "orders_per_30d": F.round(oc * 30.0 / F.greatest(F.coalesce(tenure, F.lit(0)), F.lit(30)), 4),
        "engagement_rate": engagement,
    }
    out["behavioural_stage"] = behavioural_stage(oc, out["recency_days"], engagement)
    return {name: out[name] for name in C360_COLUMNS if name != "customer_id"}


def with_change_columns(change_rows: DataFrame) -> DataFrame:
    """A change frame may carry only some kinds of change; the others count as none."""
    for name, sql_type in CHANGE_COLUMNS.items():
        if name not in change_rows.columns:
            change_rows = change_rows.withColumn(name, F.lit(None).cast(sql_type))
    return change_rows


def apply_changes(current: DataFrame, change_rows: DataFrame, as_of: Column) -> DataFrame:
    """New gold rows for the touched customers: current row (if any) + changes, derived columns recomputed."""
    change_rows = with_change_columns(change_rows)
    cur = current.select(*[F.col(c).alias(f"c_{c}") for c in C360_COLUMNS])
    joined = change_rows.join(cur, change_rows["customer_id"] == cur["c_customer_id"], "left")
    columns = {"customer_id": F.col("customer_id"), **new_row(lambda name: F.col(f"c_{name}"), F.col, as_of)}
    return joined.select(*[columns[name].alias(name) for name in C360_COLUMNS])


def merge_clauses(as_of: Column, target: str = "t", source: str = "s") -> tuple[dict[str, Column], dict[str, Column]]:
    """The MERGE's ``set`` (customer already in gold) and ``values`` (new customer) for a source of
    change rows: the same :func:`new_row`, read straight from the target row being replaced."""

    def stored_null(name: str) -> Column:
        return F.lit(None).cast(C360_SCHEMA[name].dataType)

    update = new_row(lambda name: F.col(f"{target}.{name}"), lambda name: F.col(f"{source}.{name}"), as_of)
    insert = {"customer_id": F.col(f"{source}.customer_id"),
              **new_row(stored_null, lambda name: F.col(f"{source}.{name}"), as_of)}
    return update, insert


def snapshot_changes(customers: DataFrame, orders: DataFrame, activations: DataFrame) -> DataFrame:
    """Whole silver tables read as if every row were a CDF insert (for a full rebuild or a point in time)."""

    def as_inserts(df: DataFrame) -> DataFrame:
        return df.withColumn("_change_type", F.lit("insert")).withColumn("_commit_version", F.lit(0).cast("long"))

    return changes(
        profile_changes(as_inserts(customers)), order_deltas(as_inserts(orders)), activation_deltas(as_inserts(activations))
    )


def empty_c360(spark) -> DataFrame:  # noqa: ANN001 - SparkSession
    return spark.createDataFrame([], C360_SCHEMA)
