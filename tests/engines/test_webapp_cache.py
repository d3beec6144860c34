"""The Redis cache on a real redis-server: indexes, sorting, search, bounded round trips, the insight
counters kept exact by the one writer's transactions, the write lease, epochs and reset."""

from __future__ import annotations

import collections
import math
import random

import pytest
import redis

from schemas import topics
from tests.engines.test_webapp_helpers import running_app, settings
from webapp import cache as cache_mod
from webapp import model
from webapp.cache import CacheReader, CacheWriter, EpochMismatch, LeaseLost
from webapp.records import Record

STAGES = ("prospect", "customer", "evangelist", "churn-risk")
CONSOLIDATED = topics.CUSTOMER_CONSOLIDATED.name
SCORE = topics.PROPENSITY_SCORE.name
SEGMENT = topics.SEGMENT_MATERIALIZED.name


@pytest.fixture
def writer(url):
    client = cache_mod.connect(url)
    w = CacheWriter(client, "test-writer")
    assert w.acquire_lease()
    yield w
    client.close()


@pytest.fixture
def reader(url):
    client = cache_mod.connect(url)
    yield CacheReader(client, search_max_matches=50)
    client.close()


def consolidated(customer_id: str, i: int, rng: random.Random) -> dict:
    return {
        "customer_id": customer_id, "first_name": rng.choice(["Ada", "Alan", "Grace", "Édith"]),
        "last_name": f"Name{i:03d}", "email": f"user{i}@{rng.choice(['example.com', 'corp.test'])}",
        "phone": None, "lifecycle_stage": rng.choice(STAGES), "is_active": True, "created_at": 1_767_225_600_000,
        "profile_updated_at": 1_767_225_600_000 + rng.randint(0, 10**7), "lifetime_value": round(rng.uniform(0, 500), 2),
        "order_count": rng.randint(0, 5), "last_order_at": None if i % 11 == 0 else 1_767_225_600_000 + i,
        "activations_delivered": rng.randint(0, 3), "activations_failed": rng.randint(0, 3),
        "activations_bounced": 0, "last_engagement_at": None,
    }


def populate(writer: CacheWriter, n: int, seed: int = 7) -> dict[str, dict]:
    """n customers: consolidated rows for all but every 10th, scores for 2/3, segments for 1/2. Returns
    the expected typed values per id."""
    rng = random.Random(seed)
    epoch, _ = writer.claim()
    records, expected = [], {}
    for i in range(n):
        cid = f"cust-{i:04d}"
        exp: dict = {}
        if i % 10:
            row = consolidated(cid, i, rng)
            records.append(Record(CONSOLIDATED, cid, row, 1))
            exp.update({k: row[k] for k in model.CONSOLIDATED_FIELDS})
        if i % 3:
            s = {"customer_id": cid, "score": round(rng.random(), 4), "model_version": "m1",
                 "behavioural_stage": rng.choice(["prospect", "customer", "evangelist"]), "scored_at": 5}
            records.append(Record(SCORE, cid, s, 2))
            exp.update({k: s[k] for k in model.SCORE_FIELDS})
        if i % 2 or not exp:
            seg = rng.choice(["vip_evangelist", "loyal", "nurture"])
            records.append(Record(SEGMENT, cid, {"customer_id": cid, "segment": seg}, 3))
            exp["segment"] = seg
        expected[cid] = exp
    for start in range(0, len(records), 250):
        writer.write_batch(epoch, records[start:start + 250], {})
    return expected


def expected_order(expected: dict[str, dict], column: model.Column, direction: str) -> list[str]:
    def key(cid: str):
        value = model.sort_value(column, expected[cid])
        if column.key == "customer_id":
            return cid.encode()
        if column.sort == "num":
            return (-math.inf if value is None else value, cid.encode())
        return (("" if value is None else value) + cache_mod.SEP + cid).encode()

    return sorted(expected, key=key, reverse=direction == "desc")


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("column", model.COLUMNS, ids=lambda c: c.key)
def test_every_sort_order_pages_through_every_customer_in_the_expected_order(writer, reader, column, direction):
    expected = populate(writer, 120)
    seen = []
    for page in range(1, 5):
        result = reader.page(column.key, direction, page, 35)
        assert result.total == 120
        seen += [row["customer_id"] for row in result.rows]
    assert seen == expected_order(expected, column, direction)  # missing values sort lowest, ties by id
    # a search returns its matches in exactly the same order
    searched = [r["customer_id"] for r in reader.page(column.key, direction, 1, 50, "cust-01").rows]
    assert searched == [c for c in expected_order(expected, column, direction) if c.startswith("cust-01")]


def test_rows_carry_the_typed_values_of_the_three_view_topics(writer, reader):
    expected = populate(writer, 30)
    rows = {r["customer_id"]: r for r in reader.page("customer_id", "asc", 1, 50).rows}
    for cid, exp in expected.items():
        row = rows[cid]
        assert list(row) == list(model.VIEW_FIELDS)
        for name in model.STORED_FIELDS:
            assert row[name] == exp.get(name), (cid, name)
        assert row["in_consolidated_view"] == ("first_name" in exp)


def test_a_probe_customer_is_readable_by_id_but_never_listed_counted_or_kept(url, writer, reader):
    # make verify's probes (schemas/probes.py) go through the whole pipeline but are not customers
    expected = populate(writer, 12)
    before = reader.insights()
    epoch = writer.epoch()
    rng = random.Random(5)
    probe = "probe-0a1b2c3d4e5f"
    writer.write_batch(epoch, [
        Record(CONSOLIDATED, probe, consolidated(probe, 1, rng), 10),
        Record(SCORE, probe, {"customer_id": probe, "score": 0.99, "model_version": "m1",
                              "behavioural_stage": "customer", "scored_at": 5}, 11),
        Record(SEGMENT, probe, {"customer_id": probe, "segment": "vip_evangelist"}, 12),
    ], {})
    view, _ = reader.customer(probe)
    assert view is not None and view["score"] == 0.99 and view["segment"] == "vip_evangelist"
    after = reader.insights()
    assert (after.customers, after.segments, after.stages, after.scores) == (
        before.customers, before.segments, before.stages, before.scores) == (
        len(expected), after.segments, after.stages, after.scores)
    assert probe not in [r["customer_id"] for r in after.top]
    assert reader.page("customer_id", "asc", 1, 50).total == len(expected)
    assert reader.page("customer_id", "asc", 1, 50, "probe").total == 0
    ttl = redis.Redis.from_url(url).ttl(cache_mod.customer_key(probe))
    assert 0 < ttl <= cache_mod.PROBE_TTL_S


def test_search_is_a_bounded_prefix_match_over_names_email_domain_and_id(writer, reader):
    populate(writer, 200)
    by_last = reader.page("name", "asc", 1, 50, "name01")  # last names Name010..Name019 (not 010: no row)
    assert sorted(r["last_name"] for r in by_last.rows) == [f"Name{i:03d}" for i in range(11, 20)]
    assert by_last.total == 9 and not by_last.truncated
    by_email = reader.page("customer_id", "asc", 1, 50, "user7")
    assert {r["customer_id"] for r in by_email.rows} == {f"cust-{i:04d}" for i in (7, 71, 72, 73, 74, 75, 76, 77,
                                                                                     78, 79)}
    assert [r["customer_id"] for r in reader.page("customer_id", "asc", 1, 5, "cust-0199").rows] == ["cust-0199"]
    assert reader.page("name", "asc", 1, 5, "ame01").total == 0  # prefixes only, never substrings
    capped = reader.page("order_count", "desc", 1, 100, "cust-")
    assert capped.truncated and capped.total == 50
    domain = reader.page("lifetime_value", "desc", 1, 50, "corp.test")
    values = [r["lifetime_value"] for r in domain.rows]
    assert values == sorted(values, reverse=True) and all(r["email"].endswith("@corp.test") for r in domain.rows)


def test_a_changed_name_moves_the_customer_in_the_name_index_and_the_search(writer, reader):
    epoch, _ = writer.claim()
    rng = random.Random(1)
    row = {**consolidated("c1", 1, rng), "first_name": "Zoe", "last_name": "Zed", "email": "zz@x.org"}
    writer.write_batch(epoch, [Record(CONSOLIDATED, "c1", row, 1)], {})
    writer.write_batch(epoch, [Record(CONSOLIDATED, "c1", {**row, "first_name": "Amy", "last_name": "Abe",
                                                           "email": "aa@y.org"}, 2)], {})
    assert reader.page("name", "asc", 1, 5, "zoe").total == 0
    assert reader.page("name", "asc", 1, 5, "zz@").total == 0
    assert [r["name"] for r in reader.page("name", "asc", 1, 5, "amy").rows] == ["Amy Abe"]
    assert writer.redis.zrange("customers:idx:name", 0, -1) == ["amy abe\x1fc1"]


def test_the_insight_counters_stay_exactly_what_the_hashes_say_through_random_updates(writer, reader):
    rng = random.Random(11)
    epoch, _ = writer.claim()
    ids = [f"ins-{i:03d}" for i in range(80)]
    for _ in range(12):
        batch = []
        for _ in range(60):
            cid = rng.choice(ids)
            kind = rng.random()
            if kind < 0.35:
                batch.append(Record(CONSOLIDATED, cid, consolidated(cid, rng.randint(0, 999), rng), 1))
            elif kind < 0.65:
                batch.append(Record(SCORE, cid, {"customer_id": cid, "score": rng.random(), "model_version": "m",
                                                 "behavioural_stage": rng.choice(STAGES), "scored_at": rng.randint(1, 9)},
                                    2))
            elif kind < 0.9:
                batch.append(Record(SEGMENT, cid, {"customer_id": cid, "segment": rng.choice(["a", "b", "c"])}, 3))
            else:  # tombstones
                batch.append(Record(rng.choice([CONSOLIDATED, SCORE, SEGMENT]), cid, None, 4))
        writer.write_batch(epoch, batch, {})
    insights = reader.insights()
    views = [v for v in (reader.customer(cid)[0] for cid in ids) if v is not None]
    assert insights.customers == len(views) == reader.page("customer_id", "asc", 1, 200).total
    assert dict(insights.segments) == dict(collections.Counter(v["segment"] or "" for v in views))
    stages: dict = {}
    for v in views:
        row = stages.setdefault(v["lifecycle_stage"] or "", {})
        row[v["behavioural_stage"] or ""] = row.get(v["behavioural_stage"] or "", 0) + 1
    assert insights.stages == stages
    buckets = [0] * cache_mod.SCORE_BUCKETS
    for v in views:
        if v["score"] is not None:
            buckets[model.score_bucket(v["score"])] += 1
    assert insights.scores == buckets
    top = sorted((v for v in views if v["score"] is not None), key=lambda v: (v["score"], v["customer_id"]),
                 reverse=True)[:cache_mod.TOP_N]
    assert [v["customer_id"] for v in insights.top] == [v["customer_id"] for v in top]


def _count_round_trips(monkeypatch) -> list[int]:
    calls = [0]
    original = redis.connection.Connection.send_packed_command

    def counting(self, command, check_health=True):
        calls[0] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    return calls


def test_a_page_costs_the_same_two_round_trips_whatever_its_size(writer, reader, monkeypatch):
    populate(writer, 300)
    reader.page("name", "asc", 1, 10)  # warm: connection made
    calls = _count_round_trips(monkeypatch)
    trips = {}
    for per_page in (1, 10, 100, 200):
        calls[0] = 0
        assert len(reader.page("lifetime_value", "desc", 1, per_page).rows) == per_page
        trips[per_page] = calls[0]
    assert set(trips.values()) == {2}, trips  # ZCARD+ZRANGE pipeline, then one HMGET pipeline
    for per_page in (5, 50):
        for sort in ("lifetime_value", "name"):
            calls[0] = 0
            reader.page(sort, "asc", 1, per_page, "cust-")
            assert calls[0] == 3, (sort, per_page, calls[0])  # prefix read, the matches' sort values, the rows
    calls[0] = 0
    reader.insights()
    assert calls[0] == 2  # counters + top ids + status, then the top rows


def test_a_whole_html_page_and_the_api_cost_a_constant_number_of_round_trips(url, writer, monkeypatch):
    populate(writer, 250)
    with running_app(settings(url)) as app:
        client = app.test_client()
        assert client.get("/?per_page=10").status_code == 200
        calls = _count_round_trips(monkeypatch)
        counts = {}
        for path in ("/?per_page={n}", "/api/customers?per_page={n}", "/fragments/customers?per_page={n}",
                     "/?per_page={n}&q=cust-&sort=name", "/insights?n={n}", "/api/insights?n={n}"):
            for n in (10, 200):
                calls[0] = 0
                assert client.get(path.format(n=n)).status_code == 200
                counts[(path, n)] = calls[0]
            assert counts[(path, 10)] == counts[(path, 200)], counts
            assert counts[(path, 200)] <= 4, counts
        assert client.get("/?per_page=200").get_data(as_text=True).count('<tr data-customer="') == 200


def test_only_the_lease_holder_can_write_and_a_wiped_cache_refuses_stale_writers(url, writer, reader):
    epoch, created = writer.claim()
    assert created and writer.claim() == (epoch, False)
    rng = random.Random(2)
    writer.write_batch(epoch, [Record(CONSOLIDATED, "x1", consolidated("x1", 1, rng), 1)],
                       {(CONSOLIDATED, 0): 5, (CONSOLIDATED, 1): 9})
    assert writer.stored_offsets([(CONSOLIDATED, 0), (CONSOLIDATED, 1), (CONSOLIDATED, 2)]) == {
        (CONSOLIDATED, 0): 5, (CONSOLIDATED, 1): 9}
    other = CacheWriter(cache_mod.connect(url), "another-feeder")
    assert not other.acquire_lease() and writer.lease_holder() == "test-writer"
    with pytest.raises(LeaseLost):
        other.write_batch(epoch, [Record(CONSOLIDATED, "x2", consolidated("x2", 2, rng), 1)], {(CONSOLIDATED, 0): 6})
    assert reader.customer("x2")[0] is None and writer.stored_offsets([(CONSOLIDATED, 0)]) == {(CONSOLIDATED, 0): 5}
    writer.release_lease()
    assert other.acquire_lease() and not writer.renew_lease()
    assert other.acquire_lease()  # renewing one's own lease
    writer.redis.flushdb()  # e.g. Redis restarted without persistence
    with pytest.raises(LeaseLost):
        writer.write_batch(epoch, [], {(CONSOLIDATED, 0): 7})
    assert other.acquire_lease()
    with pytest.raises(EpochMismatch):
        other.write_batch(epoch, [], {(CONSOLIDATED, 0): 7})  # the cache it knew is gone: nothing written
    assert not writer.redis.exists(cache_mod.OFFSETS)
    new_epoch, created = other.claim()
    assert created and new_epoch != epoch


def test_reset_removes_every_cache_key_and_nothing_else(url, writer):
    populate(writer, 20)
    writer.redis.set("someone-elses-key", "1")
    removed = writer.reset()
    assert removed > 20
    assert sorted(writer.redis.keys("*")) == sorted(["someone-elses-key", cache_mod.LEASE])
