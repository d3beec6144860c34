"""The tolerant, table-driven mapping of the source topics onto the table, and the cache's pure parts."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from webapp import cache, feeder, model

# What ksql/050-consolidated.sql writes: lower-case back-quoted columns, nulls for missing metrics.
KSQL_ROW = {
    "customer_id": "c-1", "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com",
    "phone": None, "lifecycle_stage": "customer", "is_active": True, "created_at": 1000, "updated_at": 2000,
    "lifetime_value": 12.5, "order_count": 2, "last_order_at": 5000, "delivered_count": 3, "failed_count": 1,
    "last_engagement_at": 4000,
}


def test_the_consolidated_columns_of_the_ksql_view_map_onto_the_table():
    got = model.map_record(model.CONSOLIDATED, KSQL_ROW)
    assert got["first_name"] == "Grace" and got["email"] == "grace@example.com"
    assert got["lifecycle_stage"] == "customer" and got["is_active"] is True
    assert (got["order_count"], got["lifetime_value"]) == (2, 12.5)
    assert (got["engagement_delivered"], got["engagement_failed"]) == (3, 1)
    assert got["profile_updated_at"] == 2000 and got["phone"] is None
    assert got["last_activity"] == 5000  # the latest of order, engagement, profile update, creation


def test_upper_case_names_aliases_and_nulls_are_tolerated():
    upper = {"CUSTOMER_ID": "c-2", "FIRST_NAME": "Alan", "LAST_NAME": None, "EMAIL_ADDRESS": "a@b.org",
             "DECLARED_LIFECYCLE_STAGE": "prospect", "TOTAL_ORDERS": "4", "LTV": "99.9", "DELIVERED": 1,
             "FAILED": None, "LAST_ACTIVITY_AT": "2026-01-01T00:00:00Z", "IS_ACTIVE": "false", "UNKNOWN_COL": 1}
    got = model.map_record(model.CONSOLIDATED, upper)
    assert got["first_name"] == "Alan" and got["last_name"] is None and got["email"] == "a@b.org"
    assert got["lifecycle_stage"] == "prospect"
    assert (got["order_count"], got["lifetime_value"]) == (4, 99.9)
    assert (got["engagement_delivered"], got["engagement_failed"]) == (1, None)
    assert got["is_active"] is False
    assert got["last_activity"] == 1_767_225_600_000  # an explicit last activity wins over derived ones
    assert set(got) == {f.name for f in model.CONSOLIDATED_FIELDS}


@pytest.mark.parametrize("value", [{"nested": 1}, [1], "lots", float("nan"), float("inf"), True])
def test_values_that_cannot_be_coerced_read_as_null(value):
    got = model.map_record(model.CONSOLIDATED, {"order_count": value, "lifetime_value": value})
    assert got["order_count"] is None and got["lifetime_value"] is None


def test_text_loses_control_characters_and_surrounding_space():
    got = model.map_record(model.CONSOLIDATED, {"first_name": "  A\x1fda\x00 ", "last_name": "   "})
    assert got["first_name"] == "Ada" and got["last_name"] is None


@pytest.mark.parametrize("raw,millis", [
    (1_767_225_600_000, 1_767_225_600_000), ("1767225600000", 1_767_225_600_000), (1.5e12, 1_500_000_000_000),
    (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 1_767_225_600_000), (dt.datetime(2026, 1, 1), 1_767_225_600_000),
    ("2026-01-01T01:00:00+01:00", 1_767_225_600_000), ("yesterday", None), (None, None), (True, None),
])
def test_timestamps_in_every_form_ksqldb_or_avro_hand_out(raw, millis):
    assert model.to_millis(raw) == millis


def test_propensity_and_segment_records_map_their_own_fields_only():
    score = model.map_record(model.PROPENSITY, {"customer_id": "c", "score": 0.25, "model_version": "m",
                                                "behavioural_stage": "loyal",
                                                "scored_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
    assert score == {"propensity_score": 0.25, "model_version": "m", "behavioural_stage": "loyal",
                     "scored_at": 1_767_225_600_000}
    segment = model.map_record(model.SEGMENT, {"customer_id": "c", "segment": "vip_evangelist",
                                               "lifecycle_stage": "x", "lifetime_value": 1.0, "order_count": 9})
    assert segment == {"segment": "vip_evangelist"}  # the rule inputs never overwrite the consolidated view


def test_every_field_is_owned_by_exactly_one_source_and_every_column_by_its_source():
    owners: dict[str, str] = {}
    for source, fields in model.FIELDS_BY_SOURCE.items():
        for f in fields:
            assert f.name not in owners, f"{f.name} owned by {owners.get(f.name)} and {source}"
            owners[f.name] = source
    for column in model.COLUMNS:
        if column.key not in {"name", "customer_id"}:
            assert owners[column.key] == column.source, column.key


def test_the_declared_lifecycle_stage_is_the_fourth_column():
    assert model.COLUMNS[3].key == "lifecycle_stage" and model.COLUMNS[3].title == "Declared stage"
    assert [c.key for c in model.COLUMNS][1:3] == ["name", "email"]


@pytest.mark.parametrize("key,expected", [
    (b"6f1c1d7e-8a55-4c55-9d61-0b7f0a0d7c11", "6f1c1d7e-8a55-4c55-9d61-0b7f0a0d7c11"),
    (b'"c-7"', "c-7"), (b'{"CUSTOMER_ID": "c-8"}', "c-8"), (b"\xff\xfe", None), (None, None), (b"", None),
])
def test_the_customer_id_comes_from_the_key_in_any_of_its_forms(key, expected):
    assert model.key_customer_id(key) == expected


def test_the_value_id_is_the_fallback_and_an_unusable_id_is_malformed():
    assert model.resolve_customer_id(None, {"CUSTOMER_ID": "c-9"}) == "c-9"
    assert model.resolve_customer_id(b"k-1", {"customer_id": "other"}) == "k-1"
    for key, record in [(None, {}), (b"has space", None), (b"x" * 65, None), (None, {"customer_id": "<script>"})]:
        with pytest.raises(model.Malformed):
            model.resolve_customer_id(key, record)


@pytest.mark.parametrize("data", [b"{oops", b"[1]", b'"text"', b"\xff"])
def test_a_json_value_that_is_not_an_object_is_malformed(data):
    with pytest.raises(model.Malformed):
        model.decode_json_value(data)
    assert model.decode_json_value(json.dumps(KSQL_ROW).encode()) == KSQL_ROW


def test_search_terms_and_queries_share_one_normal_form():
    terms = model.search_terms("C-1", {"first_name": "Ada", "last_name": "Lovelace", "email": "Ada@Example.com"})
    assert terms == ["c-1", "ada", "lovelace", "ada lovelace", "ada@example.com", "example.com"]
    assert model.normalize_search("  Ada   LOVE\x07 ") == "ada love"
    assert model.normalize_search(None) == "" and model.normalize_search("   ") == ""


def test_a_cache_write_item_carries_the_owned_fields_and_index_entries():
    fields = model.map_record(model.CONSOLIDATED, {**KSQL_ROW, "phone": None})
    item = cache._item(cache.Update("c-1", model.CONSOLIDATED, fields), now_ms=77)
    hset = dict(zip(item["hset"][::2], item["hset"][1::2], strict=True))
    assert hset["first_name"] == "Grace" and hset["lifetime_value"] == "12.5" and hset["is_active"] == "1"
    assert hset["_seen_consolidated"] == "77" and "phone" in item["hdel"]
    assert ["customers:idx:order_count", "2.0"] in item["num"]
    assert ["customers:idx:name", "grace hopper"] in item["lex"]
    assert "grace hopper" in item["terms"] and item["tomb"] == 0
    assert all(key.startswith("customers:idx:") for key, _ in item["num"] + item["lex"])
    score = cache._item(cache.Update("c-1", model.PROPENSITY, tombstone=True), now_ms=1)
    assert score["tomb"] == 1 and "_seen_propensity" in score["hdel"] and "terms" not in score
    assert ["customers:idx:propensity_score", "-inf"] in score["num"]


def test_an_action_is_sent_until_the_consolidated_view_reflects_it():
    order = {"kind": "order", "before": 2}
    assert not cache.action_arrived(order, {"_seen_consolidated": None, "order_count": "3"})
    assert not cache.action_arrived(order, {"_seen_consolidated": "1", "order_count": "2"})
    assert cache.action_arrived(order, {"_seen_consolidated": "1", "order_count": "3"})
    engagement = {"kind": "engagement", "before": None}
    assert cache.action_arrived(engagement, {"_seen_consolidated": "1", "engagement_failed": "1"})
    assert not cache.action_arrived(engagement, {"_seen_consolidated": "1"})
    assert cache.action_arrived({"kind": "customer"}, {"_seen_consolidated": "1"})


@pytest.mark.parametrize("stats,written,lag", [
    ({"ls_offset": 10, "committed_offset": 4, "lo_offset": 0}, None, 6),
    ({"ls_offset": 10, "committed_offset": -1001, "lo_offset": 0}, 8, 2),  # positions read back from Redis
    ({"ls_offset": 10, "committed_offset": -1001, "lo_offset": 3}, None, 7),
    ({"ls_offset": 0, "committed_offset": -1001, "lo_offset": 0}, None, 0),
    ({"ls_offset": -1001, "committed_offset": 5, "lo_offset": 0}, 5, None),
    ({"ls_offset": 50, "committed_offset": -1001, "lo_offset": 40}, 0, 10),  # rebuilding, retention at 40
])
def test_partition_lag_from_client_statistics(stats, written, lag):
    assert feeder._partition_lag(stats, written) == lag
