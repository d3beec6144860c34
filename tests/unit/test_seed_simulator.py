from __future__ import annotations

import csv
import json
import statistics
from collections import Counter, defaultdict

import fastavro
import pytest
from fastavro.validation import validate

from schemas import topics
from seed.simulator import (
    DAY_MS,
    GROUND_TRUTH_COLUMNS,
    SimConfig,
    Simulator,
    sidecar_path,
    simulate,
    write_ground_truth,
)

TIME_FIELD = {topics.CUSTOMER_PROFILE.name: "updated_at", topics.ORDER_PLACED.name: "placed_at",
              topics.ACTIVATION_STATUS.name: "delivered_at"}


def event_time(event) -> int:
    return event.record[TIME_FIELD[event.topic.name]]


@pytest.fixture(scope="module")
def small():
    sim = Simulator(SimConfig(customers=300, days=30, seed=11, late_share=0.05, duplicate_share=0.1))
    return sim, list(sim.events())


@pytest.fixture(scope="module")
def large():
    """Enough customers for statistical checks (about a second)."""
    sim = Simulator(SimConfig(customers=4000, days=60, seed=5))
    evs = list(sim.events())
    return sim, evs, {row["customer_id"]: row for row in sim.ground_truth()}


def test_same_seed_gives_identical_events_and_truth():
    cfg = SimConfig(customers=120, days=20, seed=3)
    first, second = Simulator(cfg), Simulator(cfg)
    a, b = list(first.events()), list(second.events())
    assert a == b and len(a) > 500
    assert first.ground_truth() == second.ground_truth()
    assert list(first.events()) == a  # a replay from the same simulator too
    other = list(simulate(SimConfig(customers=120, days=20, seed=4)))
    assert [e.key for e in other[:50]] != [e.key for e in a[:50]]


def test_only_source_topics_and_key_is_customer_id(small):
    _, evs = small
    assert {e.topic for e in evs} == set(topics.SOURCE_TOPICS)
    assert all(e.key == e.record["customer_id"] for e in evs)


def test_every_record_conforms_to_its_schema(small):
    _, evs = small
    schemas = {t.name: fastavro.parse_schema(json.loads(t.schema_str)) for t in topics.SOURCE_TOPICS}
    for e in evs:
        assert validate(e.record, schemas[e.topic.name]), e


def test_ids_are_unique_except_deliberate_duplicates(small):
    sim, evs = small
    creations = [e.key for e in evs if e.topic is topics.CUSTOMER_PROFILE
                 and e.record["created_at"] == e.record["updated_at"]]
    assert len(creations) == len(set(creations)) == 300
    activation_ids = [e.record["activation_id"] for e in evs if e.topic is topics.ACTIVATION_STATUS]
    assert len(activation_ids) == len(set(activation_ids))
    orders = [e.record for e in evs if e.topic is topics.ORDER_PLACED]
    by_id = defaultdict(list)
    for o in orders:
        by_id[o["order_id"]].append(o)
    dups = {k: v for k, v in by_id.items() if len(v) > 1}
    assert sum(len(v) - 1 for v in dups.values()) == sim.stats["duplicates"] > 0
    assert all(len(v) == 2 and v[0] == v[1] for v in dups.values())  # the same order re-sent
    assert 0.05 < sim.stats["duplicates"] / len(by_id) < 0.16  # duplicate_share = 0.1


def test_profile_comes_first_and_event_time_is_monotone_per_customer(small):
    _, evs = small
    last: dict[str, int] = {}
    for e in evs:
        if e.key not in last:
            assert e.topic is topics.CUSTOMER_PROFILE and e.record["created_at"] == e.record["updated_at"]
        t = event_time(e)
        assert t >= last.get(e.key, 0), e
        last[e.key] = t


def test_late_records_arrive_out_of_order_across_customers(small):
    sim, evs = small
    watermark, out_of_order = 0, 0
    for e in evs:
        t = event_time(e)
        out_of_order += t < watermark
        watermark = max(watermark, t)
    assert out_of_order > 0
    assert 0.03 < sim.stats["late"] / len(evs) < 0.07  # late_share = 0.05
    ordered = list(simulate(SimConfig(customers=100, days=20, late_share=0.0, duplicate_share=0.0)))
    times = [event_time(e) for e in ordered]
    assert times == sorted(times)


def test_nothing_is_published_after_the_cutoff(small):
    sim, evs = small
    assert max(event_time(e) for e in evs) < sim.config.cutoff_ms
    assert min(event_time(e) for e in evs) >= sim.config.start_ms


def test_ground_truth_matches_the_stream(small):
    sim, evs = small
    truth = {r["customer_id"]: r for r in sim.ground_truth()}
    assert len(truth) == 300
    orders = Counter()
    for _order_id, customer in {(e.record["order_id"], e.key) for e in evs if e.topic is topics.ORDER_PLACED}:
        orders[customer] += 1
    for cid, row in truth.items():
        assert row["orders_before_cutoff"] == orders[cid]
        assert row["label"] == int(row["orders_in_window"] > 0)
        assert set(row) == set(GROUND_TRUTH_COLUMNS)


def test_ground_truth_requires_a_finished_run():
    sim = Simulator(SimConfig(customers=5, days=2))
    with pytest.raises(RuntimeError):
        sim.ground_truth()


def _quartiles(rows, key):
    ordered = sorted(rows, key=lambda r: r[key])
    n = len(ordered) // 4
    return [ordered[i * n:(i + 1) * n] for i in range(4)]


def test_share_of_customers_who_order_rises_with_propensity(large):
    _, _, truth = large
    rows = list(truth.values())
    ordered_share = [statistics.mean(r["orders_before_cutoff"] > 0 for r in q)
                     for q in _quartiles(rows, "purchase_propensity")]
    label_rate = [statistics.mean(r["label"] for r in q) for q in _quartiles(rows, "purchase_propensity")]
    assert ordered_share == sorted(ordered_share) and ordered_share[3] - ordered_share[0] > 0.25
    assert label_rate == sorted(label_rate) and label_rate[3] - label_rate[0] > 0.2


def test_delivered_ratio_follows_engagement_affinity(large):
    _, evs, truth = large
    delivered, total = Counter(), Counter()
    for e in evs:
        if e.topic is topics.ACTIVATION_STATUS:
            bucket = min(3, int(truth[e.key]["engagement_affinity"] * 4))
            total[bucket] += 1
            delivered[bucket] += e.record["status"] == "delivered"
    ratio = [delivered[b] / total[b] for b in range(4)]
    assert ratio == sorted(ratio) and ratio[3] - ratio[0] > 0.25


def test_churn_lowers_the_label_and_declared_stage_is_random(large):
    _, _, truth = large
    rows = list(truth.values())
    churned = [r["label"] for r in rows if r["churned_before_cutoff"]]
    kept = [r["label"] for r in rows if not r["churned_before_cutoff"]]
    assert len(churned) > 100 and statistics.mean(churned) < statistics.mean(kept) - 0.1
    by_stage = defaultdict(list)
    for r in rows:
        by_stage[r["declared_lifecycle_stage"]].append(r["purchase_propensity"])
    assert set(by_stage) == {"prospect", "customer", "evangelist", "churn-risk"}
    assert all(800 < len(v) < 1200 for v in by_stage.values())  # uniform
    means = [statistics.mean(v) for v in by_stage.values()]
    assert max(means) - min(means) < 0.03  # declared stage does not follow the hidden propensity


def test_write_ground_truth_csv_and_sidecar(tmp_path, small):
    sim, _ = small
    path = write_ground_truth(tmp_path / "out" / "truth.csv", sim.ground_truth(), sim.config)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 300 and list(rows[0]) == list(GROUND_TRUTH_COLUMNS)
    assert {r["label"] for r in rows} <= {"0", "1"}
    meta = json.loads(sidecar_path(path).read_text())
    assert sidecar_path(path).name == "truth.meta.json"
    assert meta["cutoff_ms"] == sim.config.start_ms + 30 * DAY_MS
    assert meta["label_window_days"] == 14 and meta["seed"] == 11
    assert meta["columns"] == list(GROUND_TRUTH_COLUMNS)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        SimConfig(customers=0)
    with pytest.raises(ValueError):
        SimConfig(late_share=1.5)
