"""Bronze -> silver -> gold on the real broker, Spark local and Delta, with exact expected values."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import functions as F

from schemas import topics
from spark.jobs import bronze, gold, silver
from tests.support import pipeline

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z; gold measures recency against event time, not the wall clock


def ts(ms: int) -> dt.datetime:
    """What Spark hands back for a timestamp (session time zone UTC, naive)."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).replace(tzinfo=None)


def profile(cid: str, at: int, *, stage: str = "prospect", first: str = "Ada", email: str | None = None, **kw):
    return {"customer_id": cid, "email": email or f"{cid}@example.com", "first_name": first, "last_name": "L",
            "created_at": T0, "updated_at": at, "lifecycle_stage": stage, "is_active": True, "phone": None, **kw}


def order(oid: str, cid: str, at: int, total: float):
    return {"order_id": oid, "customer_id": cid, "order_total": total,
            "items": [{"sku": "S", "quantity": 1, "price": total}], "currency": "EUR", "channel": "web",
            "placed_at": at}


def activation(aid: str, cid: str, at: int, status: str):
    return {"activation_id": aid, "customer_id": cid, "order_id": None, "channel": "email", "status": status,
            "delivered_at": at, "attempts": 1}


P, ORD, A = topics.CUSTOMER_PROFILE, topics.ORDER_PLACED, topics.ACTIVATION_STATUS


@pytest.fixture
def env(kafka_broker, schema_registry, delta_root):
    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(delta_root), pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, settings)
    return settings


def test_known_events_land_exactly_in_bronze_silver_gold(spark, kafka_broker, env):
    events = [
        # c1: created, then edited; the edit is sent BEFORE a late copy of the original (out of order).
        (P, "c1", profile("c1", T0, first="Ada")),
        (P, "c1", profile("c1", T0 + 2 * DAY, first="Ada2", stage="evangelist")),
        (P, "c1", profile("c1", T0 + DAY, first="Late")),  # late: older than the edit, must not win
        (ORD, "c1", order("o1", "c1", T0 + DAY, 10.0)),
        (ORD, "c1", order("o2", "c1", T0 + 2 * DAY, 30.0)),
        (ORD, "c1", order("o2", "c1", T0 + 2 * DAY, 30.0)),  # deliberate duplicate re-send
        (A, "c1", activation("a1", "c1", T0 + DAY, "delivered")),
        (A, "c1", activation("a2", "c1", T0 + DAY, "failed")),
        (A, "c1", activation("a3", "c1", T0 + 3 * DAY, "bounced")),
        # c2: a customer without orders or activations
        (P, "c2", profile("c2", T0, stage="churn-risk")),
    ]
    pipeline.produce(kafka_broker, env, events)
    pipeline.run(bronze, spark, env)
    bronze_counts = {
        name: spark.read.format("delta").load(env.table("bronze", name)).count()
        for name in ("customer_profile", "order_placed", "activation_status")
    }
    assert bronze_counts == {"customer_profile": 4, "order_placed": 3, "activation_status": 3}
    b = spark.read.format("delta").load(env.table("bronze", "order_placed")).orderBy("offset").first()
    assert b.key == "c1" and b.topic == env.topic(ORD).name and b.schema_id > 0 and b.ingest_time is not None

    pipeline.run(silver, spark, env)
    customers = {r.customer_id: r for r in spark.read.format("delta").load(env.table("silver", "customers")).collect()}
    assert set(customers) == {"c1", "c2"}
    assert customers["c1"].first_name == "Ada2" and customers["c1"].lifecycle_stage == "evangelist"
    orders = spark.read.format("delta").load(env.table("silver", "orders"))
    assert sorted(r.order_id for r in orders.collect()) == ["o1", "o2"]
    assert spark.read.format("delta").load(env.table("silver", "activations")).count() == 3

    pipeline.run(gold, spark, env)
    c360 = {r.customer_id: r for r in spark.read.format("delta").load(env.table("gold", "c360")).collect()}
    assert set(c360) == {"c1", "c2"}
    c1, c2 = c360["c1"], c360["c2"]
    assert (c1.first_name, c1.lifecycle_stage) == ("Ada2", "evangelist")  # declared stage passed through
    assert (c1.order_count, c1.lifetime_value, c1.avg_order_value) == (2, 40.0, 20.0)
    assert (c1.first_order_at, c1.last_order_at) == (ts(T0 + DAY), ts(T0 + 2 * DAY))
    # as_of = newest event time seen = T0 + 3 days (activation a3)
    assert c1.recency_days == 1 and c1.tenure_days == 3 and c1.behavioural_stage == "customer"
    assert (c1.activations_delivered, c1.activations_failed, c1.engagement_rate) == (1, 2, 0.3333)
    assert c1.last_engagement_at == ts(T0 + DAY)
    assert (c2.order_count, c2.lifetime_value, c2.avg_order_value, c2.behavioural_stage) == (0, 0.0, None, "prospect")
    assert c2.lifecycle_stage == "churn-risk"

    # A second round: more orders for c2 and a re-sent old order for c1 change exactly what they should.
    pipeline.produce(kafka_broker, env, [
        (ORD, "c2", order("o3", "c2", T0 + 5 * DAY, 5.5)),
        (ORD, "c1", order("o1", "c1", T0 + DAY, 10.0)),
        (A, "c1", activation("a2", "c1", T0 + 4 * DAY, "delivered")),  # a2 retried and delivered
    ])
    for job in (bronze, silver, gold):
        pipeline.run(job, spark, env)
    c360 = {r.customer_id: r for r in spark.read.format("delta").load(env.table("gold", "c360")).collect()}
    assert (c360["c1"].order_count, c360["c1"].lifetime_value) == (2, 40.0)
    assert (c360["c1"].activations_delivered, c360["c1"].activations_failed) == (2, 1)
    assert (c360["c2"].order_count, c360["c2"].lifetime_value, c360["c2"].behavioural_stage) == (1, 5.5, "customer")
    assert c360["c2"].recency_days == 0 and c360["c1"].recency_days == 3
    history = spark.sql(f"DESCRIBE HISTORY delta.`{env.table('gold', 'c360')}`").where(F.col("operation") == "MERGE")
    assert history.count() == 2
