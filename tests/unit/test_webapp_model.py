"""The customer view's pure parts: one name per field (the contracts'), the same fields in every view,
records applied idempotently with bounded history, the insight contributions, the feeder status as a
typed object, the health the pages show, and the sent actions' arrival rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import topics
from schemas.json_contract import JsonContract
from webapp import actions, model
from webapp.cache import SCORES, SEGMENTS, SEP, STAGES, apply, contributions, index_entries, listed
from webapp.feeder import partition_lag
from webapp.records import FEED_TOPICS, Decoder, Mismatch, Record, customer_id_of
from webapp.runtime import health_from
from webapp.settings import WebSettings
from webapp.status import FeederStatus, TopicStatus

CONSOLIDATED = topics.CUSTOMER_CONSOLIDATED.name


def row(customer_id: str = "c-1", **overrides) -> dict:
    base = {"customer_id": customer_id, "first_name": "Ada", "last_name": "Lovelace", "email": "Ada@Example.com",
            "phone": None, "lifecycle_stage": "customer", "is_active": True, "created_at": 1, "profile_updated_at": 2,
            "lifetime_value": 10.5, "order_count": 1, "last_order_at": 30, "activations_delivered": 2,
            "activations_failed": 1, "activations_bounced": 1, "last_engagement_at": 20}
    base.update(overrides)
    return base


def test_the_cached_fields_are_the_contracts_names_and_nothing_else():
    contract = JsonContract.for_topic(topics.CUSTOMER_CONSOLIDATED)
    assert set(model.CONSOLIDATED_FIELDS) == set(contract.names) - {"customer_id"}
    avro = {t.name: {f["name"] for f in json.loads(t.schema_str)["fields"]} for t in FEED_TOPICS
            if t.value_format == "avro"}
    assert set(model.SCORE_FIELDS) == avro[topics.PROPENSITY_SCORE.name] - {"customer_id"}
    assert set(model.SEGMENT_FIELDS) <= avro[topics.SEGMENT_MATERIALIZED.name]
    assert set(model.STORED_FIELDS).isdisjoint({"engagement_delivered", "propensity_score", "delivered_count",
                                                 "updated_at"}), "no second name for a metric"
    source = Path(model.__file__).read_text()
    assert "alias" not in source.split('"""', 2)[2].lower(), "no alias tables"


def test_every_column_is_a_view_field_and_the_declared_stage_is_fourth():
    assert [c.key for c in model.COLUMNS][3] == "lifecycle_stage"
    assert all(c.key in model.VIEW_FIELDS for c in model.COLUMNS)
    assert model.COLUMN_BY_KEY["activations_failed"].hint == "activations not delivered: failed or bounced"


def test_a_view_has_every_field_whatever_the_stored_ones():
    empty = model.customer_view("c-1", {})
    full = model.customer_view("c-1", {"first_name": "Ada", "score": "0.5", model.IN_VIEW: "1", "is_active": "0"})
    assert list(empty) == list(full) == list(model.VIEW_FIELDS)
    assert full["score"] == 0.5 and full["is_active"] is False and full["in_consolidated_view"] is True
    assert empty["name"] is None and empty["in_consolidated_view"] is False


def test_records_are_applied_idempotently_with_bounded_newest_first_history():
    raw: dict[str, str] = {}
    records = [Record(CONSOLIDATED, "c-1", row(), 5)]
    records += [Record(topics.PROPENSITY_SCORE.name, "c-1", {"customer_id": "c-1", "score": i / 10, "model_version": "m",
                                                              "behavioural_stage": "customer", "scored_at": 100 + i}, 6)
                for i in range(5)]
    records += [Record(topics.SEGMENT_MATERIALIZED.name, "c-1", {"customer_id": "c-1", "segment": s}, 7 + i)
                for i, s in enumerate(["nurture", "nurture", "loyal"])]
    records += [Record(topics.ORDER_ENRICHED.name, "c-1", {"order_id": f"o{i % 4}", "order_total": 1.0, "currency": "EUR",
                                                            "channel": "web", "item_count": 1, "placed_at": i}, 8)
                for i in range(6)]
    for r in records:
        apply(raw, r, history_max=3)
    once = dict(raw)
    for r in records:
        apply(raw, r, history_max=3)
    assert raw == once, "applying a record again changes nothing"
    scores = json.loads(raw["score_history"])
    assert [s["scored_at"] for s in scores] == [104, 103, 102], "bounded, newest first"
    assert [(c["segment"], c["previous"]) for c in json.loads(raw["segment_history"])] == [("loyal", "nurture"),
                                                                                        ("nurture", None)]
    assert [o["order_id"] for o in json.loads(raw["recent_orders"])] == ["o1", "o0", "o3"], "one entry per order"
    assert raw["activations_failed"] == "1" and raw[model.IN_VIEW] == "1" and "phone" not in raw


def test_a_tombstone_clears_its_topics_fields_and_history_alone_does_not_list_a_customer():
    raw: dict[str, str] = {}
    apply(raw, Record(CONSOLIDATED, "c-1", row(), 1), 5)
    apply(raw, Record(topics.ACTIVATION_STATUS.name, "c-1", {"activation_id": "a", "order_id": None, "channel": "sms",
                                                             "status": "bounced", "delivered_at": 3, "attempts": 2}, 2), 5)
    assert listed(raw)
    apply(raw, Record(CONSOLIDATED, "c-1", None, 3), 5)
    assert not listed(raw) and set(raw) == {"recent_engagements"}


def test_insight_contributions_and_index_entries_of_one_customer():
    values = model.typed({"segment": "loyal", "lifecycle_stage": "customer", "behavioural_stage": "evangelist",
                          "score": "0.97", "first_name": "Ada"})
    assert contributions(values) == {(SEGMENTS, "loyal"): 1, (STAGES, f"customer{SEP}evangelist"): 1,
                                     (SCORES, f"loyal{SEP}9"): 1}
    assert contributions({}) == {(SEGMENTS, ""): 1, (STAGES, SEP): 1}
    entries = index_entries("c-1", values)
    assert entries["customers:idx:score"] == ("c-1", 0.97)
    assert entries["customers:idx:order_count"] == ("c-1", float("-inf"))
    assert entries["customers:idx:name"] == (f"ada{SEP}c-1", 0.0)
    assert model.score_bucket(1.0) == 9 and model.score_bucket(0.0) == 0 and model.score_bucket(0.1) == 1


def test_search_terms_and_queries_share_one_normal_form():
    terms = model.search_terms("C-1", {"first_name": "Ada\x07", "last_name": "Love Lace", "email": "Ada@Example.com"})
    assert terms == ["c-1", "ada", "love lace", "ada love lace", "ada@example.com", "example.com"]
    assert model.normalize_search("  Ada   LOVE lace\x07 ") == "ada love lace"


@pytest.mark.parametrize("key,ok", [(b"c-1", True), (None, False), (b"", False), (b"has space", False),
                                    (b"\xff", False), (b'"json-string"', False)])
def test_the_customer_id_is_the_utf8_key_and_nothing_else(key, ok):
    if ok:
        assert customer_id_of(key) == key.decode()
    else:
        with pytest.raises(Mismatch):
            customer_id_of(key)


def test_a_json_record_is_checked_against_its_contract_and_the_key_must_agree():
    decoder = Decoder(registry=None)
    record, remarks = decoder.decode(CONSOLIDATED, b"c-1", json.dumps(row()).encode(), 9)
    assert record.value == row() and remarks == []
    with pytest.raises(Mismatch, match="differs from the key"):
        decoder.decode(CONSOLIDATED, b"c-2", json.dumps(row()).encode(), 9)
    with pytest.raises(Mismatch, match="missing field activations_delivered"):
        old = {k: v for k, v in row().items() if k != "activations_delivered"}
        decoder.decode(CONSOLIDATED, b"c-1", json.dumps({**old, "delivered_count": 2}).encode(), 9)
    assert decoder.decode(CONSOLIDATED, b"c-1", None, 9)[0].value is None


def test_the_feeder_status_is_a_typed_object_and_other_formats_are_refused():
    status = FeederStatus("f-1", state="running", heartbeat_ms=1000, lag=3,
                          topics={CONSOLIDATED: TopicStatus(CONSOLIDATED, lag=3, mismatches={"x": 2})})
    again = FeederStatus.from_json(status.to_json())
    assert again == status and isinstance(again.topics[CONSOLIDATED], TopicStatus) and again.mismatched == 2
    assert FeederStatus.from_json(json.dumps({**json.loads(status.to_json()), "format": 99})) is None
    assert FeederStatus.from_json("{not json") is None and FeederStatus.from_json(None) is None
    assert FeederStatus.from_json(json.dumps({"format": 1, "instance": "x", "surprise": 1})) is None


def test_the_figures_digest_follows_what_the_panels_show_and_not_the_heartbeat():
    # The live refresh re-renders the pipeline panels when this changes: a status written after the
    # batch that bumped the cache version must still reach an open page.
    import dataclasses

    from webapp.status import LayerStatus

    base = FeederStatus("f-1", state="running", heartbeat_ms=1000, lag=0,
                        topics={CONSOLIDATED: TopicStatus(CONSOLIDATED, lag=0, records=0)})
    digest = base.figures
    assert dataclasses.replace(base, heartbeat_ms=9000, batches=4).figures == digest
    more = FeederStatus.from_json(base.to_json())
    assert more is not None and more.figures == digest
    more.topics[CONSOLIDATED].records = 60
    assert more.figures != digest
    lagging = dataclasses.replace(base, lag=5)
    assert lagging.figures != digest
    layered = dataclasses.replace(base, layers={"gold.c360": LayerStatus("gold", "gold.c360", 3, 1, None, 5)})
    assert layered.figures != digest
    assert health_from(WebSettings.from_env({}), 1, base, 0, now=1.5).as_json()["figures"] == digest


def test_the_health_the_pages_show_comes_from_the_feeders_status():
    settings = WebSettings.from_env({"FEEDER_STALE_S": "15"})
    fresh = FeederStatus("f-1", state="running", heartbeat_ms=100_000, kafka_ok=True, kafka_reason=None)
    assert health_from(settings, 3, fresh, 10, now=105).problems == []
    assert "has not reported for 20s" in health_from(settings, 3, fresh, 10, now=120).problems[0]
    assert "has not reported yet" in health_from(settings, 3, None, 0).problems[0]
    down = FeederStatus("f-1", state="running", heartbeat_ms=100_000, kafka_ok=False, kafka_reason="all brokers down")
    assert health_from(settings, 3, down, 1, now=101).problems == ["Kafka is unreachable: all brokers down"]
    assert health_from(settings, None, None, None, redis_reason="refused").problems == [
        "Redis is unreachable: refused"]


def test_an_action_is_sent_until_the_consolidated_view_reflects_it():
    order = {"kind": "order", "before": 2}
    assert not actions.arrived(order, None)
    assert not actions.arrived(order, {"in_consolidated_view": True, "order_count": 2})
    assert actions.arrived(order, {"in_consolidated_view": True, "order_count": 3})
    engagement = {"kind": "engagement", "before": 3}
    # activations_failed already counts the bounced ones: they are not added twice
    assert not actions.arrived(engagement, {"in_consolidated_view": True, "activations_delivered": 2,
                                            "activations_failed": 1, "activations_bounced": 1})
    assert actions.arrived(engagement, {"in_consolidated_view": True, "activations_delivered": 3,
                                        "activations_failed": 1})
    session: dict = {}
    for i in range(actions.KEPT + 3):
        actions.remember(session, "order", f"c-{i}", "x" * 500, 0)
    assert len(session["actions"]) == actions.KEPT and session["actions"][0]["customer_id"] == f"c-{actions.KEPT + 2}"
    assert len(json.dumps(session)) < 3000, "fits a session cookie"


@pytest.mark.parametrize("stats,written,lag", [
    ({"ls_offset": 10, "lo_offset": 0, "committed_offset": 4}, 7, 3),
    ({"ls_offset": 10, "lo_offset": 0, "committed_offset": 4}, None, 6),
    ({"ls_offset": 10, "lo_offset": 5, "committed_offset": -1001}, None, 5),
    ({"ls_offset": 10, "lo_offset": 8, "committed_offset": 2}, 3, 2),
    ({"ls_offset": -1001}, 3, None),
])
def test_partition_lag_from_client_statistics(stats, written, lag):
    assert partition_lag(stats, written) == lag
