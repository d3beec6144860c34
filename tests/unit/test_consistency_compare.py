"""The consistency check's comparison (pure): agreement, disagreement, catching up, forgotten customers."""

from __future__ import annotations

import io
import json

import fastavro

from consistency.compare import METRICS, Side, compare
from consistency.read import horizon
from schemas import topics

NOW = 10_000_000
SETTLE = 300_000
METRICS_A = {"order_count": 3, "lifetime_value": 120.5, "last_order_at": 1_000, "activations_delivered": 2,
             "activations_failed": 1, "last_engagement_at": 900}


def side(written_ms: int = NOW - 600_000, **changes) -> Side:
    return Side({**METRICS_A, **changes}, written_ms)


def run(view, gold, *, gold_horizon=NOW - 1_000, settle=SETTLE, examples=5, erased=()):
    return compare(view, gold, now_ms=NOW, gold_horizon_ms=gold_horizon, settle_ms=settle, examples=examples,
                   erased=erased)


def test_equal_metrics_agree_and_a_cent_of_float_noise_is_equal():
    report = run({"a": side(), "b": side()}, {"a": side(), "b": side(lifetime_value=120.5000000001)})
    assert (report.customers, report.checked, report.agreeing, report.disagreeing, report.catching_up) == (2, 2, 2, 0, 0)


def test_a_settled_difference_is_a_disagreement_naming_both_values():
    report = run({"a": side(), "b": side()}, {"a": side(lifetime_value=1205.0), "b": side()})
    assert (report.agreeing, report.disagreeing) == (1, 1)
    (d,) = report.examples
    assert (d.customer_id, d.metric, d.view, d.gold) == ("a", "lifetime_value", "120.50", "1205.00")
    assert "a lifetime_value view=120.50 gold=1205.00" in report.line()


def test_a_recent_difference_is_catching_up_until_it_settles():
    recent = side(NOW - 10_000, order_count=4)
    assert run({"a": recent}, {"a": side()}).catching_up == 1
    assert run({"a": recent}, {"a": side()}, settle=5_000).disagreeing == 1


def test_a_view_change_after_gold_s_horizon_is_catching_up_however_old():
    """A stopped gold or score job: the view moved on after their last commit."""
    view = {"a": side(NOW - 900_000, order_count=4)}
    assert run(view, {"a": side(NOW - 950_000)}, gold_horizon=NOW - 910_000).catching_up == 1
    assert run(view, {"a": side(NOW - 950_000)}, gold_horizon=None).catching_up == 1, "gold never committed"
    assert run(view, {"a": side(NOW - 950_000)}, gold_horizon=NOW - 800_000).disagreeing == 1


def test_a_lagging_view_has_only_the_settle_time():
    """ksqlDB reports no horizon: gold ahead of the view is excused only while it is recent."""
    report = run({"a": side(NOW - 900_000, order_count=2)}, {"a": side(NOW - 800_000)})
    assert report.disagreeing == 1 and report.examples[0].metric == "order_count"


def test_a_customer_missing_on_one_side():
    report = run({"a": side(), "b": side()}, {"a": side()})
    assert report.disagreeing == 1 and report.examples[0].metric == "customer"
    assert (report.examples[0].view, report.examples[0].gold) == ("present", None)
    assert run({"a": side(NOW - 1_000)}, {}, gold_horizon=NOW - 5_000).catching_up == 1


def test_probes_never_count_and_examples_are_bounded():
    view = {f"c{i}": side() for i in range(8)} | {"probe-0123456789ab": side()}
    gold = {f"c{i}": side(order_count=9) for i in range(8)}
    report = run(view, gold, examples=3)
    assert report.customers == 8 and report.disagreeing == 8 and len(report.examples) == 3
    assert [d.customer_id for d in report.examples] == ["c0", "c1", "c2"]


def test_the_report_record_is_what_its_contract_says():
    report = run({"a": side()}, {"a": side(activations_failed=5)})
    schema = fastavro.parse_schema(json.loads(topics.CONSISTENCY.schema_str))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, report.record())
    buf.seek(0)
    back = fastavro.schemaless_reader(buf, schema)
    assert back["disagreeing"] == 1 and back["metrics"] == list(METRICS)
    assert back["examples"] == [{"customer_id": "a", "metric": "activations_failed", "view": "1", "gold": "5"}]


def test_gold_s_horizon_is_the_older_of_the_gold_and_score_commits():
    statuses = [{"query": "gold_c360", "committed_at": 500}, {"query": "score", "committed_at": 400},
                {"query": "gold_c360", "committed_at": 300}, {"query": "bronze", "committed_at": 50}]
    assert horizon(statuses) == 400
    assert horizon([{"query": "gold_c360", "committed_at": 500}]) is None, "score never committed"


def test_a_forgotten_customer_is_counted_apart_never_compared():
    """An erasure deletes gold's row while ksqlDB keeps the customer's aggregates: not a disagreement."""
    view = {"a": side(), "gone": side(), "gone2": side(order_count=7)}
    gold = {"a": side(), "gone2": side()}
    erased = {"gone", "gone2", "never-seen"}
    report = run(view, gold, erased=erased)
    assert (report.customers, report.agreeing, report.disagreeing, report.catching_up, report.forgotten) == (
        1, 1, 0, 0, 2)
    assert report.examples == [] and report.record()["forgotten"] == 2
    assert report.line().endswith("; 2 forgotten")
    unerased = run(view, gold)
    assert (unerased.disagreeing, unerased.forgotten) == (2, 0), "without the erasures both differ"
