"""webapp.cache.apply on an erasure request: the customer's stored strings are emptied but for the
marker, and no later record of any feed topic stores anything of that customer again."""

from __future__ import annotations

from tests.support.samples import SAMPLES
from webapp import cache as cache_mod
from webapp.records import Record

ID = "cust-1"


def rec(topic: str, value: dict | None) -> Record:
    return Record(topic, ID, None if value is None else {**value, "customer_id": ID}, 1_767_240_000_000)


def profile() -> dict:
    return {"customer_id": ID, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
            "phone": "+442071234567", "lifecycle_stage": "customer", "is_active": True, "order_count": 2,
            "lifetime_value": 10.0}


def test_erasure_empties_the_hash_and_later_records_are_ignored():
    raw: dict[str, str] = {}
    cache_mod.apply(raw, rec(cache_mod.CONSOLIDATED, profile()), 20)
    cache_mod.apply(raw, rec(cache_mod.SCORE, SAMPLES[cache_mod.SCORE]), 20)
    assert raw["email"] == "ada@example.com" and "score_history" in raw and cache_mod.listed(raw)
    erasure = rec(cache_mod.ERASURE, SAMPLES[cache_mod.ERASURE])
    cache_mod.apply(raw, erasure, 20)
    assert raw == {cache_mod.ERASED: str(SAMPLES[cache_mod.ERASURE]["requested_at"])}
    assert not cache_mod.listed(raw)
    for topic in (cache_mod.CONSOLIDATED, cache_mod.SCORE, cache_mod.SEGMENT):
        value = profile() if topic == cache_mod.CONSOLIDATED else SAMPLES[topic]
        cache_mod.apply(raw, rec(topic, value), 20)
    cache_mod.apply(raw, erasure, 20)  # twice: the same
    assert raw == {cache_mod.ERASED: str(SAMPLES[cache_mod.ERASURE]["requested_at"])}


def test_an_erasure_tombstone_changes_nothing():
    raw: dict[str, str] = {}
    cache_mod.apply(raw, rec(cache_mod.CONSOLIDATED, profile()), 20)
    kept = dict(raw)
    cache_mod.apply(raw, rec(cache_mod.ERASURE, None), 20)
    assert raw == kept
