"""The gold job applies a batch inside its MERGE (spark/transforms/gold.py ``merge_clauses``): the rows
it leaves in Delta must be the ones ``apply_changes`` computes on a join of the same inputs."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from spark import tables
from spark.jobs.gold import KEEP, GoldBatch
from spark.settings import JobSettings
from spark.transforms import gold as T_gold

D = dt.datetime(2026, 3, 1)
BATCH_COLUMNS = (
    "customer_id string, updated_at timestamp, email string, first_name string, last_name string, "
    "created_at timestamp, lifecycle_stage string, is_active boolean, phone string, order_total double, "
    "placed_at timestamp, status string, delivered_at timestamp, _change_type string, _commit_version long, "
    "_entity string"
)


def cdf_row(entity: str, cid: str, change: str = "insert", version: int = 7, **fields):
    row = dict.fromkeys(c.split()[0] for c in BATCH_COLUMNS.split(", "))
    row.update(customer_id=cid, _change_type=change, _commit_version=version, _entity=entity, **fields)
    return tuple(row.values())


def stored_rows(spark):  # noqa: ANN001, ANN201
    """c1 ordered twice and had one failed activation, profile as of D; c2 and c4 have a profile only."""
    base = spark.createDataFrame(
        [("c1", "c1@old", "Ada", D, 2, 30.0, D, D + dt.timedelta(days=3), 1),
         ("c2", "c2@x", "Bo", D, None, None, None, None, None),
         ("c4", "c4@x", "Di", D, None, None, None, None, None)],
        "customer_id string, email string, first_name string, profile_updated_at timestamp, d_orders long, "
        "d_value double, d_first_order_at timestamp, d_last_order_at timestamp, d_failed long",
    ).withColumn("created_at", F.lit(D))
    return T_gold.apply_changes(T_gold.empty_c360(spark), base, F.lit(D + dt.timedelta(days=10)))


def test_merge_writes_what_apply_changes_computes(spark, delta_root):
    settings = JobSettings.from_env({"DELTA_ROOT": str(delta_root)})
    path = settings.table("gold", "c360")
    tables.ensure(spark, path, T_gold.C360_SCHEMA, tables.MERGED)
    stored = stored_rows(spark)
    stored.write.format("delta").mode("append").save(path)

    later = D + dt.timedelta(days=20)
    batch = spark.createDataFrame(
        [
            # c1: a newer profile, a third order, its failed activation re-sent and now delivered
            cdf_row("customers", "c1", updated_at=later, email="c1@new", first_name="Ada", created_at=D),
            cdf_row("orders", "c1", order_total=12.0, placed_at=later),
            cdf_row("activations", "c1", "update_preimage", status="failed", delivered_at=D),
            cdf_row("activations", "c1", "update_postimage", status="delivered", delivered_at=later),
            # c2: a profile older than the stored one (kept out), one delivered and one failed activation
            cdf_row("customers", "c2", updated_at=D - dt.timedelta(days=1), email="c2@stale", first_name="Old"),
            cdf_row("activations", "c2", status="delivered", delivered_at=later),
            cdf_row("activations", "c2", status="failed", delivered_at=later),
            # c3: new to gold, an order before any profile
            cdf_row("orders", "c3", order_total=5.5, placed_at=later),
            # c4: a profile as new as the stored one replaces it (ties go to the change)
            cdf_row("customers", "c4", updated_at=D, email="c4@tie", first_name="Di", created_at=D),
        ],
        BATCH_COLUMNS,
    )
    assert set(batch.columns) >= {c for cols in KEEP.values() for c in cols}

    GoldBatch(settings)(batch, 0)

    got = {r.customer_id: r.asDict() for r in spark.read.format("delta").load(path).collect()}
    by = {name: batch.where(F.col("_entity") == name) for name in KEEP}
    change_rows = T_gold.changes(
        T_gold.profile_changes(by["customers"]), T_gold.order_deltas(by["orders"]), T_gold.activation_deltas(by["activations"])
    )
    expected = {r.customer_id: r.asDict()
                for r in T_gold.apply_changes(stored, change_rows, F.lit(later).cast("timestamp")).collect()}
    assert got == expected
    # and the values themselves, so a fault shared by both paths shows too
    c1, c2, c3, c4 = got["c1"], got["c2"], got["c3"], got["c4"]
    assert (c1["email"], c1["order_count"], c1["lifetime_value"], c1["avg_order_value"]) == ("c1@new", 3, 42.0, 14.0)
    assert (c1["first_order_at"], c1["last_order_at"], c1["recency_days"]) == (D, later, 0)
    assert (c1["tenure_days"], c1["orders_per_30d"]) == (20, 3.0)
    assert (c1["activations_delivered"], c1["activations_failed"], c1["engagement_rate"]) == (1, 0, 1.0)
    assert (c1["last_engagement_at"], c1["behavioural_stage"], c1["updated_at"]) == (later, "customer", later)
    assert (c2["email"], c2["first_name"], c2["order_count"], c2["behavioural_stage"]) == ("c2@x", "Bo", 0, "prospect")
    assert (c2["activations_delivered"], c2["activations_failed"], c2["engagement_rate"]) == (1, 1, 0.5)
    assert (c3["email"], c3["order_count"], c3["avg_order_value"], c3["behavioural_stage"]) == (None, 1, 5.5, "customer")
    assert (c3["first_order_at"], c3["tenure_days"], c3["orders_per_30d"]) == (later, 0, 1.0)
    assert c4["email"] == "c4@tie"


def test_replayed_batch_changes_nothing(spark, delta_root):
    settings = JobSettings.from_env({"DELTA_ROOT": str(delta_root)})
    path = settings.table("gold", "c360")
    tables.ensure(spark, path, T_gold.C360_SCHEMA, tables.MERGED)
    stored_rows(spark).write.format("delta").mode("append").save(path)
    batch = spark.createDataFrame([cdf_row("orders", "c1", order_total=10.0, placed_at=D)], BATCH_COLUMNS)
    job = GoldBatch(settings)
    job(batch, 3)
    job(batch, 3)  # a restart re-running the batch its checkpoint had not committed
    (c1,) = spark.read.format("delta").load(path).where("customer_id = 'c1'").collect()
    assert (c1.order_count, c1.lifetime_value) == (3, 40.0)
