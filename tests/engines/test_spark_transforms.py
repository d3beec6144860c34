"""The pure transformations on small frames (Spark local, no Kafka, no Delta)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from schemas import serde, topics
from spark.entities import ACTIVATIONS, CUSTOMERS, ORDERS
from spark.transforms import bronze, gold, silver
from tests.support.samples import SAMPLES

D = dt.datetime(2026, 3, 1)


def test_behavioural_stage_rules(spark):
    rows = [(0, None, None, "prospect"), (3, 61, 0.9, "churn-risk"), (5, 30, 0.5, "evangelist"),
            (5, 31, 0.9, "customer"), (4, 1, 1.0, "customer"), (9, 2, None, "customer")]
    df = spark.createDataFrame(rows, "orders long, recency int, engagement double, expected string")
    got = df.select(gold.behavioural_stage(F.col("orders"), F.col("recency"), F.col("engagement")).alias("s"),
                    "expected").collect()
    assert [r.s for r in got] == [r.expected for r in got]


def test_dedup_keeps_latest_profile_and_first_order(spark):
    profiles = spark.createDataFrame(
        [("c1", D, 5, "old"), ("c1", D + dt.timedelta(days=1), 3, "newest-by-time"), ("c1", D, 9, "old-later-offset")],
        "customer_id string, updated_at timestamp, offset long, first_name string",
    ).withColumn("partition", F.lit(0))
    assert [r.first_name for r in silver.dedup(profiles, CUSTOMERS).collect()] == ["newest-by-time"]
    orders = spark.createDataFrame([("o1", 7, 1.0), ("o1", 4, 2.0)], "order_id string, offset long, order_total double") \
        .withColumn("partition", F.lit(0)).withColumn("placed_at", F.lit(D))
    assert [r.order_total for r in silver.dedup(orders, ORDERS).collect()] == [2.0]
    assert silver.newer_condition(ORDERS) is None and "offset" in silver.newer_condition(ACTIVATIONS)


def test_activation_update_moves_counts_between_statuses(spark):
    cdf = spark.createDataFrame(
        [("c1", "failed", D, "update_preimage"), ("c1", "delivered", D + dt.timedelta(days=2), "update_postimage"),
         ("c1", "bounced", D, "insert")],
        "customer_id string, status string, delivered_at timestamp, _change_type string",
    )
    (row,) = gold.activation_deltas(cdf).collect()
    assert (row.d_delivered, row.d_failed, row.d_last_engagement_at) == (1, 0, D + dt.timedelta(days=2))


def test_apply_changes_adds_deltas_to_the_current_row(spark):
    current = gold.apply_changes(
        gold.empty_c360(spark),
        spark.createDataFrame([("c1", 2, 30.0, D, D + dt.timedelta(days=3))],
                              "customer_id string, d_orders long, d_value double, d_first_order_at timestamp, "
                              "d_last_order_at timestamp"),
        F.lit(D + dt.timedelta(days=10)),
    )
    change = spark.createDataFrame([("c1", 1, 12.0, D + dt.timedelta(days=20), D + dt.timedelta(days=20))],
                                   "customer_id string, d_orders long, d_value double, d_first_order_at timestamp, "
                                   "d_last_order_at timestamp")
    (row,) = gold.apply_changes(current, change, F.lit(D + dt.timedelta(days=20))).collect()
    assert (row.order_count, row.lifetime_value, row.avg_order_value) == (3, 42.0, 14.0)
    assert (row.first_order_at, row.last_order_at, row.recency_days) == (D, D + dt.timedelta(days=20), 0)
    assert row.email is None and row.behavioural_stage == "customer"


def test_bronze_decodes_by_schema_id_and_explains_failures(spark):
    record = SAMPLES[topics.ORDER_PLACED.name]
    codec = serde.TopicSerde(serde.registry_client("mock://bronze-small"), topics.ORDER_PLACED)
    good = codec.serialize(record)
    schema_id, body = serde.parse_frame(good)
    raw = spark.createDataFrame(
        [(b"k", good, 0), (b"k", b"\x05" + good[1:], 1), (b"k", serde.frame(schema_id + 1, body), 2), (b"k", None, 3)],
        "key binary, value binary, offset long",
    ).select("key", "value", F.lit(topics.ORDER_PLACED.name).alias("topic"), F.lit(0).alias("partition"),
             "offset", F.current_timestamp().alias("timestamp"))
    decoded = bronze.decode_topic(bronze.frame(raw), topics.ORDER_PLACED.name, topics.ORDER_PLACED.schema_str,
                                  {schema_id: topics.ORDER_PLACED.schema_str})
    (ok,) = bronze.good_rows(decoded).collect()
    assert (ok.order_id, ok.order_total, ok.items[0].sku, ok.schema_id) == (record["order_id"], 59.97, "SKU-1", schema_id)
    reasons = {r.offset: r.reason for r in bronze.quarantine(decoded).collect()}
    assert reasons == {1: "bad magic byte 0x05", 2: f"unknown schema id {schema_id + 1}", 3: "null value"}
