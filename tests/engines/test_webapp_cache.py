"""The Redis cache layer on a real redis-server: indexes, sorting, search, bounded round trips,
atomic concurrent writers, tombstones, epochs and reset."""

from __future__ import annotations

import math
import random
import re
import threading

import pytest
import redis

from tests.engines.test_webapp_helpers import db_url, flush, running_app, settings
from webapp import cache as cache_mod
from webapp import model
from webapp.cache import Cache, EpochMismatch, Update

STAGES = ("prospect", "customer", "evangelist", "churn-risk")


@pytest.fixture
def url(redis_server):
    url = db_url(redis_server)
    flush(url)
    yield url
    flush(url)


@pytest.fixture
def cache(url):
    client = cache_mod.connect(url)
    yield Cache(client, search_max_matches=50)
    client.close()


def _consolidated(i: int, rng: random.Random) -> dict:
    return {
        "first_name": rng.choice(["Ada", "Alan", "Grace", "Édith", None]),
        "last_name": f"Name{i:03d}",
        "email": None if i % 17 == 0 else f"user{i}@{rng.choice(['example.com', 'corp.test'])}",
        "lifecycle_stage": None if i % 13 == 0 else rng.choice(STAGES),
        "order_count": None if i % 11 == 0 else rng.randint(0, 5),
        "lifetime_value": round(rng.uniform(0, 500), 2),
        "delivered_count": rng.randint(0, 3),
        "failed_count": rng.randint(0, 3),
        "updated_at": 1_767_225_600_000 + rng.randint(0, 10**7),
    }


def _populate(cache: Cache, n: int, seed: int = 7) -> dict[str, dict]:
    """n customers: consolidated rows for all, scores for 2/3, segments for 1/2. Returns the expected
    typed fields per id."""
    rng = random.Random(seed)
    epoch, _ = cache.claim_epoch()
    updates, expected = [], {}
    for i in range(n):
        cid = f"cust-{i:04d}"
        fields = model.map_record(model.CONSOLIDATED, _consolidated(i, rng))
        updates.append(Update(cid, model.CONSOLIDATED, fields))
        exp = dict(fields)
        if i % 3:
            p = model.map_record(model.PROPENSITY, {"score": rng.random(), "model_version": "m1",
                                                    "behavioural_stage": rng.choice(["loyal", "new", "lapsed"]),
                                                    "scored_at": 1})
            updates.append(Update(cid, model.PROPENSITY, p))
            exp.update(p)
        if i % 2:
            s = model.map_record(model.SEGMENT, {"segment": rng.choice(["vip_evangelist", "loyal", "nurture"])})
            updates.append(Update(cid, model.SEGMENT, s))
            exp.update(s)
        expected[cid] = exp
    for start in range(0, len(updates), 250):
        cache.write_batch(epoch, updates[start:start + 250], {})
    return expected


def _expected_order(expected: dict[str, dict], column: model.Column, direction: str) -> list[str]:
    def key(cid: str):
        value = model.sort_value(column, {**expected[cid], "customer_id": cid})
        if column.sort == "num":
            return (-math.inf if value is None else value, cid.encode())
        return (("" if value is None else value) + cache_mod.SEP + cid).encode() if column.key != "customer_id" \
            else cid.encode()

    return sorted(expected, key=key, reverse=direction == "desc")


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("column", model.COLUMNS, ids=lambda c: c.key)
def test_every_sort_order_pages_through_every_customer_in_the_expected_order(cache, column, direction):
    expected = _populate(cache, 120)
    seen = []
    for page in range(1, 5):
        result = cache.page(column.key, direction, page, 35)
        assert result.total == 120
        seen += [row["customer_id"] for row in result.rows]
    assert seen == _expected_order(expected, column, direction)  # missing values sort lowest, ties by id


def test_rows_carry_the_typed_values_of_all_three_sources(cache):
    expected = _populate(cache, 30)
    rows = {r["customer_id"]: r for r in cache.page("customer_id", "asc", 1, 50).rows}
    for cid, exp in expected.items():
        row = rows[cid]
        for name in ("first_name", "last_name", "email", "lifecycle_stage", "order_count", "lifetime_value",
                     "engagement_delivered", "engagement_failed", "propensity_score", "behavioural_stage",
                     "segment", "last_activity"):
            assert row[name] == exp.get(name), (cid, name)


def test_search_is_a_bounded_prefix_match_over_names_email_domain_and_id(cache):
    _populate(cache, 200)
    by_last = cache.page("name", "asc", 1, 50, "name01")  # last names Name010..Name019
    assert sorted(r["last_name"] for r in by_last.rows) == [f"Name{i:03d}" for i in range(10, 20)]
    assert by_last.total == 10 and not by_last.truncated
    by_email = cache.page("customer_id", "asc", 1, 50, "user7")
    assert {r["customer_id"] for r in by_email.rows} == {f"cust-{i:04d}" for i in (7, 70, 71, 72, 73, 74, 75, 76,
                                                                                     77, 78, 79) if i % 17}
    by_id = cache.page("customer_id", "asc", 1, 5, "cust-0199")
    assert [r["customer_id"] for r in by_id.rows] == ["cust-0199"]
    assert cache.page("name", "asc", 1, 5, "velace").total == 0  # prefixes only, never substrings
    # the cap: "cust-" matches all 200, the cache looks at 50 (search_max_matches) and says so
    capped = cache.page("order_count", "desc", 1, 100, "cust-")
    assert capped.truncated and capped.total == 50
    # matches are ordered by the sort column exactly like the unfiltered table
    domain = cache.page("lifetime_value", "desc", 1, 50, "corp.test")
    values = [r["lifetime_value"] for r in domain.rows]
    assert values == sorted(values, reverse=True) and all(r["email"].endswith("@corp.test") for r in domain.rows)


def test_a_changed_name_moves_the_customer_in_the_name_index_and_the_search(cache):
    epoch, _ = cache.claim_epoch()
    fields = model.map_record(model.CONSOLIDATED, {"first_name": "Zoe", "last_name": "Zed", "email": "zz@x.org"})
    cache.write_batch(epoch, [Update("c1", model.CONSOLIDATED, fields)], {})
    fields = model.map_record(model.CONSOLIDATED, {"first_name": "Amy", "last_name": "Abe", "email": "aa@y.org"})
    cache.write_batch(epoch, [Update("c1", model.CONSOLIDATED, fields)], {})
    assert cache.page("name", "asc", 1, 5, "zoe").total == 0
    assert cache.page("name", "asc", 1, 5, "zz@").total == 0
    assert [r["name"] for r in cache.page("name", "asc", 1, 5, "amy").rows] == ["Amy Abe"]
    assert cache.redis.zcard("customers:idx:name") == 1
    assert cache.redis.zrange("customers:idx:name", 0, -1) == ["amy abe\x1fc1"]


def _count_round_trips(monkeypatch) -> list[int]:
    calls = [0]
    original = redis.connection.Connection.send_packed_command

    def counting(self, command, check_health=True):
        calls[0] += 1
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)
    return calls


def test_a_page_costs_the_same_few_round_trips_whatever_its_size(cache, monkeypatch):
    _populate(cache, 300)
    cache.page("name", "asc", 1, 10)  # warm: connection made, scripts irrelevant to reads
    calls = _count_round_trips(monkeypatch)
    trips = {}
    for per_page in (1, 10, 100, 200):
        calls[0] = 0
        result = cache.page("lifetime_value", "desc", 1, per_page)
        assert len(result.rows) == per_page
        trips[per_page] = calls[0]
    assert set(trips.values()) == {2}, trips  # ZCARD+ZRANGE pipeline, then one HMGET pipeline
    for per_page in (5, 50):
        for sort in ("lifetime_value", "name"):
            calls[0] = 0
            cache.page(sort, "asc", 1, per_page, "cust-")
            assert calls[0] == 3, (sort, per_page, calls[0])  # prefix read, ordering, rows


def test_a_whole_html_page_and_the_api_cost_a_constant_number_of_round_trips(url, monkeypatch):
    with running_app(settings(url, CACHE_CONSUMER_ENABLED="false")) as app:
        rt = app.extensions["marketing_engine"]
        _populate(rt.cache, 250)
        client = app.test_client()
        assert client.get("/?per_page=10").status_code == 200
        calls = _count_round_trips(monkeypatch)
        counts = {}
        for path in ("/?per_page={n}", "/api/customers?per_page={n}", "/fragments/customers?per_page={n}",
                     "/?per_page={n}&q=cust-&sort=name"):
            for n in (10, 200):
                calls[0] = 0
                response = client.get(path.format(n=n))
                assert response.status_code == 200
                counts[(path, n)] = calls[0]
            assert counts[(path, 10)] == counts[(path, 200)], counts
            assert counts[(path, 200)] <= 8, counts
        html = client.get("/?per_page=200").get_data(as_text=True)
        assert html.count('<tr data-customer="') == 200


def test_writers_of_different_topics_racing_on_the_same_customers_keep_every_index_consistent(url):
    ids = [f"race-{i:03d}" for i in range(150)]
    caches = [Cache(cache_mod.connect(url)) for _ in range(3)]
    epoch, _ = caches[0].claim_epoch()
    rng = random.Random(3)
    errors = []

    def writer(cache: Cache, source: str) -> None:
        try:
            for round_ in range(15):
                batch = []
                for cid in rng.sample(ids, 60):
                    if source == model.CONSOLIDATED:
                        rec = {"first_name": f"F{round_}", "last_name": cid, "email": f"{cid}@r{round_}.test",
                               "lifecycle_stage": STAGES[round_ % 4], "order_count": round_}
                    elif source == model.PROPENSITY:
                        rec = {"score": round_ / 20, "behavioural_stage": f"b{round_}"}
                    else:
                        rec = {"segment": f"s{round_}"}
                    batch.append(Update(cid, source, model.map_record(source, rec)))
                cache.write_batch(epoch, batch, {})
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c, s)) for c, s in
               zip(caches, (model.CONSOLIDATED, model.PROPENSITY, model.SEGMENT), strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    r = caches[0].redis
    total = r.zcard(cache_mod.IDS)
    assert total > 0
    for column in model.COLUMNS:
        key = cache_mod.index_key(column)
        assert r.zcard(key) == total, column.key  # exactly one member per customer in every index
    for cid in r.zrange(cache_mod.IDS, 0, -1):
        raw = r.hgetall(cache_mod.customer_key(cid))
        for key in cache_mod.LEX_INDEXES:
            assert r.zscore(key, raw[f"_m:{key}"]) is not None
    for c in caches:
        c.redis.close()


def test_a_tombstone_clears_its_source_and_removes_a_customer_no_source_knows(cache):
    epoch, _ = cache.claim_epoch()
    cons = model.map_record(model.CONSOLIDATED, {"first_name": "Tom", "last_name": "Stone", "order_count": 2})
    score = model.map_record(model.PROPENSITY, {"score": 0.5, "behavioural_stage": "loyal"})
    cache.write_batch(epoch, [Update("t1", model.CONSOLIDATED, cons), Update("t1", model.PROPENSITY, score)], {})
    cache.write_batch(epoch, [Update("t1", model.CONSOLIDATED, tombstone=True)], {})
    row = cache.customer("t1")
    assert row["first_name"] is None and row["order_count"] is None and row["propensity_score"] == 0.5
    assert not row["in_consolidated_view"]
    assert cache.page("name", "asc", 1, 5, "tom").total == 0
    cache.write_batch(epoch, [Update("t1", model.PROPENSITY, tombstone=True)], {})
    assert cache.customer("t1") is None
    r = cache.redis
    assert r.zcard(cache_mod.IDS) == 0
    assert all(r.zcard(cache_mod.index_key(c)) == 0 for c in model.COLUMNS)
    assert r.zcard(cache_mod.SEARCH) == 0


def test_offsets_are_stored_with_the_data_and_a_wiped_cache_refuses_stale_writers(cache):
    epoch, created = cache.claim_epoch()
    assert created
    assert cache.claim_epoch() == (epoch, False)
    rec = model.map_record(model.SEGMENT, {"segment": "loyal"})
    version = cache.write_batch(epoch, [Update("o1", model.SEGMENT, rec)], {("t", 0): 5, ("t", 2): 9},
                                {"records:t": 2, "malformed:t": 1})
    assert version == 1
    assert cache.stored_offsets([("t", 0), ("t", 1), ("t", 2)]) == {("t", 0): 5, ("t", 2): 9}
    meta = cache.meta()
    assert meta["malformed"] == {"t": 1} and meta["records"] == {"t": 2} and meta["customers"] == 1
    cache.redis.hset(cache_mod.customer_key("o1"), "_unrelated", "x")
    cache.redis.set("other:app:key", "kept")  # a shared Redis: a reset touches only the cache's keys
    cache.redis.rpush(cache_mod.ACTIONS, "{}")
    removed = cache.reset()
    assert removed >= 5
    assert cache.redis.get("other:app:key") == "kept" and cache.redis.llen(cache_mod.ACTIONS) == 1
    assert not any(re.match(r"^(customer|customers|cache):", k) for k in cache.redis.keys("*"))
    with pytest.raises(EpochMismatch):
        cache.write_batch(epoch, [Update("o2", model.SEGMENT, rec)], {("t", 0): 6})
    assert cache.customer("o2") is None and cache.stored_offsets([("t", 0)]) == {}
    new_epoch, created = cache.claim_epoch()
    assert created and new_epoch != epoch
