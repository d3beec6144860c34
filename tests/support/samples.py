"""One valid record per Avro topic, for round trips and fixtures."""

from __future__ import annotations

from schemas import topics

CUSTOMER = "6f1c1d7e-8a55-4c55-9d61-0b7f0a0d7c11"
ORDER = "0b9a4c1e-2a3e-4f9b-8e1f-3c0c9f3e2d10"

SAMPLES: dict[str, dict] = {
    topics.CUSTOMER_PROFILE.name: {
        "customer_id": CUSTOMER, "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
        "created_at": 1_767_225_600_000, "updated_at": 1_767_225_600_500, "lifecycle_stage": "evangelist",
        "is_active": True, "phone": "+442071234567",
    },
    topics.ORDER_PLACED.name: {
        "order_id": ORDER, "customer_id": CUSTOMER, "order_total": 59.97,
        "items": [{"sku": "SKU-1", "quantity": 3, "price": 19.99}], "currency": "EUR", "channel": "web",
        "placed_at": 1_767_229_200_000,
    },
    topics.ACTIVATION_STATUS.name: {
        "activation_id": "a7d0b8e2-5f7e-4a43-8a57-1f0e9f0c6b21", "customer_id": CUSTOMER, "order_id": None,
        "channel": "push", "status": "bounced", "delivered_at": 1_767_232_800_000, "attempts": 2,
    },
    topics.SEGMENT_MATERIALIZED.name: {
        "customer_id": CUSTOMER, "segment": "vip_evangelist", "lifecycle_stage": "evangelist",
        "lifetime_value": 1234.5, "order_count": 12, "behavioural_stage": "evangelist", "score": 0.81,
    },
    topics.PROPENSITY_SCORE.name: {
        "customer_id": CUSTOMER, "score": 0.81, "model_version": "lr-20260101T000000", "behavioural_stage": "loyal",
        "scored_at": 1_767_236_400_000,
    },
    topics.CUSTOMER_C360.name: {
        "customer_id": CUSTOMER, "order_count": 12, "lifetime_value": 782.33, "last_order_at": 1_767_229_200_000,
        "activations_delivered": 4, "activations_failed": 1, "last_engagement_at": 1_767_225_600_000,
        "profile_updated_at": 1_767_222_000_000, "updated_at": 1_767_229_200_000,
    },
    topics.CONSISTENCY.name: {
        "checked_at": 1_767_229_300_000, "customers": 1000, "checked": 990, "agreeing": 989, "disagreeing": 1,
        "catching_up": 10, "metrics": ["order_count", "lifetime_value"], "settle_ms": 300_000,
        "examples": [{"customer_id": CUSTOMER, "metric": "lifetime_value", "view": "782.33", "gold": "7823.3"}],
        "forgotten": 2,
    },
    topics.PIPELINE_STATUS.name: {
        "job": "silver", "query": "silver_orders", "batch_id": 42, "rows": 17,
        "newest_event_at": 1_767_229_200_000, "committed_at": 1_767_229_203_500, "probes": ["probe-0a1b2c3d4e5f"],
    },
    topics.CUSTOMER_ERASURE.name: {
        "customer_id": CUSTOMER, "request_id": "5d0e8f7a-1b2c-4d3e-9f40-a1b2c3d4e5f6",
        "requested_at": 1_767_240_000_000, "requested_by": "ops@example.com",
    },
}
