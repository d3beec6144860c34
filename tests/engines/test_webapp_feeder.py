"""The feeder (the cache's one writer) against the real Kafka broker, the real redis-server and the
Schema Registry test double: records of its five topics reach the cache, the API and the customer
history; records that do not match their contract are counted per kind and never cached; restarts
resume where the cache stops; a feeder killed mid-batch loses nothing and applies nothing twice; a
second feeder only stands by; Redis and Kafka outages recover by themselves; the status is a typed
object in Redis."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis
import requests

from schemas import serde, topics
from tests.engines.test_webapp_helpers import (
    caught_up,
    committed,
    consolidated,
    end_offsets,
    enriched_order,
    new_id,
    produce,
    produce_avro,
    produce_json,
    running,
    running_app,
    running_feeder,
    score,
    segment,
    settings,
    wait_until,
)
from tests.support.kafka_broker import start_broker
from tests.support.paths import REPO
from tests.support.procs import ServerProcess, free_port
from webapp import cache as cache_mod
from webapp.status import FeederStatus

CONSOLIDATED = topics.CUSTOMER_CONSOLIDATED.name
SCORES = topics.PROPENSITY_SCORE.name


def _cached(client, customer_id: str, **want):
    """The API's view of a customer once it has every wanted value (else None)."""
    response = client.get(f"/api/customers/{customer_id}")
    if response.status_code != 200:
        return None
    body = response.get_json()
    return body if all(body.get(k) == v for k, v in want.items()) else None


def _status(url: str) -> FeederStatus | None:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return FeederStatus.from_json(client.get(cache_mod.STATUS))
    finally:
        client.close()


def _committed_everything(bootstrap: str, group: str) -> bool:
    ends = {p: o for p, o in end_offsets(bootstrap, CONSOLIDATED).items() if o > 0}
    done = committed(bootstrap, group, CONSOLIDATED)
    return bool(ends) and all(done[p] == o for p, o in ends.items())


def activation(customer_id: str, activation_id: str, status: str, at: int) -> dict:
    return {"activation_id": activation_id, "customer_id": customer_id, "order_id": None, "channel": "email",
            "status": status, "delivered_at": at, "attempts": 1}


def test_records_of_the_five_topics_reach_the_cache_the_api_and_the_history(broker, url, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    a, b = new_id("a"), new_id("b")
    t0 = 1_767_225_600_000
    produce_json(broker.bootstrap, [consolidated(
        a, first_name="Grace", last_name="Hopper", email="grace@example.com", lifecycle_stage="customer",
        order_count=3, lifetime_value=123.45, last_order_at=t0 + 3000, activations_delivered=4,
        activations_failed=2, activations_bounced=1, last_engagement_at=t0 + 2000, phone="+3212345678")])
    produce_json(broker.bootstrap, [consolidated(b, first_name="Alan", last_name="Turing", lifecycle_stage="prospect")])
    produce_avro(broker.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE, [
        score(a, 0.41, t0 + 10_000), score(a, 0.73, t0 + 20_000, behavioural_stage="evangelist"),
        score(a, 0.73, t0 + 20_000, behavioural_stage="evangelist")])  # at-least-once: re-published
    produce_avro(broker.bootstrap, schema_registry.url, topics.SEGMENT_MATERIALIZED, [
        segment(a, "nurture"), segment(a, "loyal")])
    order = str(uuid.uuid4())
    produce_json(broker.bootstrap, [enriched_order(a, order, 40.0, t0 + 1000), enriched_order(a, order, 40.0, t0 + 1000),
                                    enriched_order(a, str(uuid.uuid4()), 83.45, t0 + 3000)],
                 topic=topics.ORDER_ENRICHED.name)
    produce_avro(broker.bootstrap, schema_registry.url, topics.ACTIVATION_STATUS, [
        activation(a, "act-1", "failed", t0 + 500), activation(a, "act-1", "delivered", t0 + 2000),
        activation(a, "act-2", "bounced", t0 + 2500)])
    with running(web) as (app, feeder):
        client = app.test_client()
        got = wait_until(lambda: _cached(client, a, segment="loyal", score=0.73), 60, "customer a")
        assert {k: got[k] for k in ("first_name", "email", "lifecycle_stage", "order_count", "lifetime_value",
                                    "activations_delivered", "activations_failed", "activations_bounced",
                                    "behavioural_stage", "model_version", "phone", "is_active")} == {
            "first_name": "Grace", "email": "grace@example.com", "lifecycle_stage": "customer", "order_count": 3,
            "lifetime_value": 123.45, "activations_delivered": 4, "activations_failed": 2,
            "activations_bounced": 1, "behavioural_stage": "evangelist", "model_version": "lr-test",
            "phone": "+3212345678", "is_active": True}
        assert got["last_activity"] == t0 + 3000 and got["scored_at"] == t0 + 20_000
        # the list and the detail return the same fields with the same values
        listed = client.get("/api/customers", query_string={"q": "grace@", "sort": "score"}).get_json()
        assert [r["customer_id"] for r in listed["items"]] == [a]
        assert listed["items"][0] == got
        other = wait_until(lambda: _cached(client, b, first_name="Alan"), 30, "customer b")
        assert set(other) == set(got) and other["score"] is None and other["segment"] is None

        history = wait_until(lambda: (h := client.get(f"/api/customers/{a}/history").get_json())
                             and len(h["recent_engagements"]) == 2 and len(h["recent_orders"]) == 2 and h, 30,
                             "the history")
        assert [(s["score"], s["scored_at"]) for s in history["score_history"]] == [(0.73, t0 + 20_000),
                                                                                  (0.41, t0 + 10_000)]
        assert [(c["segment"], c["previous"]) for c in history["segment_history"]] == [("loyal", "nurture"),
                                                                                     ("nurture", None)]
        assert [o["order_total"] for o in history["recent_orders"]] == [83.45, 40.0], "newest first, re-send once"
        assert {e["activation_id"]: e["status"] for e in history["recent_engagements"]} == {
            "act-1": "delivered", "act-2": "bounced"}, "latest status per activation"

        wait_until(lambda: caught_up(feeder), 30, "lag 0")
        status = wait_until(lambda: (s := _status(url)) and s.lag == 0 and s, 30, "the status in Redis")
        assert status.state == "running" and status.instance == feeder.instance and status.kafka_ok
        assert status.topics[topics.ORDER_ENRICHED.name].records >= 3
        assert status.topics[CONSOLIDATED].last_event_ms is not None
        assert status.dead_letters is not None or status.dead_letters_reason is not None
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json()["feeder"]["lag"] == 0


def test_records_not_matching_their_contract_are_counted_per_kind_logged_once_and_never_guessed(
        broker, url, schema_registry, caplog):
    web = settings(url, broker.bootstrap, schema_registry.url)
    good, extra, old = new_id("good"), new_id("extra"), new_id("old")
    previous = consolidated(old)
    for name in ("activations_delivered", "activations_failed", "activations_bounced"):
        previous.pop(name)
    previous.update(delivered_count=2, failed_count=1, bounced_count=0)  # the names before issue 14
    upper = {k.upper(): v for k, v in consolidated(new_id()).items()}
    with running(web) as (app, feeder):
        client = app.test_client()
        wait_until(lambda: caught_up(feeder), 60, "caught up with earlier tests' records")
        before = {t: dict(s.mismatches) for t, s in feeder.snapshot().topics.items()}
        caplog.set_level(logging.WARNING, logger="webapp.feeder")
        produce(broker.bootstrap, CONSOLIDATED, [
            (old, json.dumps(previous).encode()),
            (new_id(), json.dumps(upper).encode()),
            (new_id(), b"{not json"),
            (new_id(), b"{also not json"),
            (None, json.dumps(consolidated("no-key")).encode()),
            ("bad id with spaces", json.dumps(consolidated("x")).encode()),
            (new_id(), json.dumps(consolidated("y", order_count="3")).encode()),
            (extra, json.dumps({**consolidated(extra), "churn_score": 0.2}).encode()),
        ])
        valid = serde.TopicSerde(serde.registry_client(schema_registry.url), topics.PROPENSITY_SCORE).serialize(
            score(good, 0.5))
        produce(broker.bootstrap, SCORES, [
            (good, b"\x07not-a-confluent-frame"),
            (good, serde.frame(987_654, b"\x02\x04")),  # a schema id the registry does not know
            (good, valid[:9]),  # truncated Avro body
        ])
        produce_json(broker.bootstrap, [consolidated(good, first_name="Good")])
        produce_avro(broker.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE, [score(good, 0.5)])
        wait_until(lambda: _cached(client, good, score=0.5), 60, "the good records")
        assert _cached(client, extra), "an unexpected field alone keeps the record"
        assert client.get(f"/api/customers/{old}").status_code == 404, "a record with the old names is not guessed at"
        wait_until(lambda: caught_up(feeder), 30, "caught up")
        after = {t: dict(s.mismatches) for t, s in feeder.snapshot().topics.items()}
        delta = {t: {k: n - before[t].get(k, 0) for k, n in after[t].items() if n - before[t].get(k, 0)}
                 for t in after}
        assert delta[CONSOLIDATED] == {
            "missing field activations_delivered; missing field activations_failed; missing field "
            "activations_bounced; unexpected field delivered_count; unexpected field failed_count; "
            "unexpected field bounced_count": 1,
            "; ".join([f"missing field {n}" for n in (
                "customer_id", "first_name", "last_name", "email", "phone", "lifecycle_stage", "is_active",
                "created_at", "profile_updated_at", "lifetime_value", "order_count", "last_order_at",
                "activations_delivered", "activations_failed", "activations_bounced", "last_engagement_at")]
                      + [f"unexpected field {n.upper()}" for n in consolidated("z")]): 1,
            "value is not JSON": 2,
            "record without a key": 1,
            "key is not a customer id": 1,
            "field order_count: string where the contract says integer": 1,
            "unexpected field churn_score": 1,
        }
        writer_id = serde.parse_frame(valid)[0]
        assert delta[SCORES] == {"value is not Confluent-framed Avro": 1, "schema id 987654 is unknown to the registry": 1,
                                 f"value does not decode with writer schema id {writer_id}": 1}
        logged = [r.getMessage() for r in caplog.records if "does not match its contract" in r.getMessage()]
        assert sum("value is not JSON" in m for m in logged) == 1, "each kind is logged once"
        # counted in Redis with the data (survives a restart), and in the typed status the UI reads
        stored = redis.Redis.from_url(url, decode_responses=True).hgetall(cache_mod.MISMATCHES)
        assert int(stored[f"{CONSOLIDATED}{cache_mod.SEP}value is not JSON"]) >= 2
        status = wait_until(lambda: (s := _status(url)) and s.topics[CONSOLIDATED].mismatched >= 8 and s, 30, "status")
        assert status.restarts == 0 and status.last_error is None


def test_a_restart_resumes_where_the_cache_stops_with_nothing_lost(broker, url, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    first = [new_id("first") for _ in range(20)]
    second = [new_id("second") for _ in range(15)]
    produce_json(broker.bootstrap, [consolidated(c, order_count=1) for c in first])
    with running(web) as (app, feeder):
        client = app.test_client()
        wait_until(lambda: all(_cached(client, c) for c in first), 60, "the first records")
        wait_until(lambda: caught_up(feeder), 30, "lag 0")
        records_before = int(redis.Redis.from_url(url).hget(cache_mod.STATS, f"records:{CONSOLIDATED}"))
    # stopped: the group's committed offsets are at the end of the topic (they follow Redis)
    assert _committed_everything(broker.bootstrap, web.consumer_group)
    produce_json(broker.bootstrap, [consolidated(c, order_count=2) for c in second])
    produce_json(broker.bootstrap, [consolidated(first[0], order_count=7)])
    with running(web) as (app, feeder):  # same Redis: a restarted feeder
        client = app.test_client()
        wait_until(lambda: all(_cached(client, c, order_count=2) for c in second), 60, "the second records")
        wait_until(lambda: _cached(client, first[0], order_count=7), 30, "the update")
        assert all(_cached(client, c, order_count=1) for c in first[1:])
        wait_until(lambda: caught_up(feeder), 30, "lag 0")
        records = int(redis.Redis.from_url(url).hget(cache_mod.STATS, f"records:{CONSOLIDATED}"))
        assert records - records_before == len(second) + 1  # resumed: nothing read twice, nothing skipped
        assert feeder.snapshot().restarts == 0
    assert _committed_everything(broker.bootstrap, web.consumer_group)


def _feeder_process(web_url: str, bootstrap: str, registry_url: str, group: str, port: int, log_path) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": web_url, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "SCHEMA_REGISTRY_URL": registry_url, "CONSUMER_GROUP": group, "FEEDER_HEALTH_PORT": str(port),
           "BIND_HOST": "127.0.0.1", "FEEDER_BATCH_MAX": "25", "LOG_LEVEL": "WARNING", "STARTUP_WAIT_S": "30",
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "webapp.feeder"], cwd=REPO, env=env,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def test_a_feeder_killed_mid_batch_loses_nothing_and_applies_nothing_twice(tmp_path, url, schema_registry):
    """SIGKILL (no goodbye) while the feeder works through a backlog in 25-record transactions, four
    times, then let it finish: every record is applied exactly once (the records counter, the history
    lists and the insight counters would show a batch applied twice or lost)."""
    own = start_broker(tmp_path / "kafka")  # exact record counts: nobody else writes these topics
    try:
        own.create_topics([t.name for t in topics.ALL_TOPICS], partitions=3)
        rng = random.Random(14)
        customers = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(120)]
        t0 = 1_767_225_600_000
        rounds = 5
        for r in range(rounds):
            produce_json(own.bootstrap, [consolidated(c, order_count=r + 1, lifetime_value=10.0 * (r + 1),
                                                      lifecycle_stage=("prospect", "customer")[i % 2])
                                         for i, c in enumerate(customers)])
            produce_json(own.bootstrap, [enriched_order(c, f"{c}-o{r}", 10.0, t0 + r * 1000) for c in customers],
                         topic=topics.ORDER_ENRICHED.name)
            produce_avro(own.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE,
                         [score(c, round(rng.random(), 3), t0 + r * 1000) for c in customers])
            produce_avro(own.bootstrap, schema_registry.url, topics.SEGMENT_MATERIALIZED,
                         [segment(c, ("nurture", "loyal")[(r + i) % 2]) for i, c in enumerate(customers)])
        produced = {name: len(customers) * rounds for name in
                    (CONSOLIDATED, topics.ORDER_ENRICHED.name, SCORES, topics.SEGMENT_MATERIALIZED.name)}
        group, port = f"kill-{uuid.uuid4().hex[:6]}", free_port()
        client = redis.Redis.from_url(url, decode_responses=True)
        log_path = tmp_path / "feeder.log"
        kills = 0
        for _ in range(4):
            proc = _feeder_process(url, own.bootstrap, schema_registry.url, group, port, log_path)
            start = int(client.hget(cache_mod.META, "version") or 0)
            try:
                wait_until(lambda s=start: int(client.hget(cache_mod.META, "version") or 0) >= s + 3, 60,
                           "the feeder to write a few batches")
                time.sleep(rng.uniform(0.0, 0.15))  # somewhere inside a later batch
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                kills += 1
            client.delete(cache_mod.LEASE)  # what expiry does after 15 s: the next start need not wait
        total = sum(produced.values())
        done = int(sum(int(v) for k, v in client.hgetall(cache_mod.STATS).items() if k.startswith("records:")))
        assert 0 < done < total, f"the kills must land mid-backlog ({done} of {total} applied)"
        proc = _feeder_process(url, own.bootstrap, schema_registry.url, group, port, log_path)
        try:
            wait_until(lambda: all(int(client.hget(cache_mod.STATS, f"records:{t}") or 0) >= n
                                   for t, n in produced.items()), 120, "the whole backlog")
            # Readiness needs the client's statistics (kafka_ok), which come every statistics interval:
            # on a loaded machine the backlog can be applied before the first of them arrives.
            wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200, 30,
                       "the restarted feeder ready")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log_path.read_text()[-3000:]
        stats = client.hgetall(cache_mod.STATS)
        assert {t: int(stats[f"records:{t}"]) for t in produced} == produced, "each record applied exactly once"
        assert client.get(cache_mod.LEASE) is None, "a clean stop releases the lease"
        for c in customers:
            raw = client.hgetall(cache_mod.customer_key(c))
            assert raw["order_count"] == str(rounds)
            orders = json.loads(raw["recent_orders"])
            assert [o["order_id"] for o in orders] == [f"{c}-o{r}" for r in reversed(range(rounds))]
            assert len(json.loads(raw["score_history"])) == rounds
            changes = json.loads(raw["segment_history"])
            assert len(changes) == rounds and all(x["segment"] != x["previous"] for x in changes)
        # the insight counters (HINCRBY: a batch applied twice would double them) match the hashes
        insights = cache_mod.CacheReader(client).insights()
        assert insights.customers == len(customers) == sum(n for _, n in insights.segments)
        assert insights.scored == len(customers)
        expected_segments = {}
        for i, _ in enumerate(customers):
            name = ("nurture", "loyal")[(rounds - 1 + i) % 2]
            expected_segments[name] = expected_segments.get(name, 0) + 1
        assert dict(insights.segments) == expected_segments
        assert kills == 4
    finally:
        own.stop()


def test_only_the_lease_holder_writes_and_a_standby_takes_over_when_it_stops(broker, url, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    early, late = new_id("early"), new_id("late")
    produce_json(broker.bootstrap, [consolidated(early, first_name="Early")])
    with running_feeder(web, instance="feeder-one") as one:
        wait_until(lambda: one.snapshot().state == "running", 30, "the first feeder")
        with running_feeder(web, instance="feeder-two") as two:
            wait_until(lambda: two.snapshot().state == "standby", 30, "the second feeder standing by")
            wait_until(lambda: caught_up(one), 60, "caught up")
            status = _status(url)
            assert status.instance == "feeder-one", "only the lease holder writes the status"
            assert two.snapshot().batches == 0
            with pytest.raises(cache_mod.LeaseLost):  # a writer without the lease is refused by the transaction
                cache_mod.CacheWriter(cache_mod.connect(url), "feeder-two").write_batch(
                    redis.Redis.from_url(url, decode_responses=True).hget(cache_mod.META, "epoch"), [], {("x", 0): 1})
            one.stop()  # releases the lease on the way out
            wait_until(lambda: two.snapshot().state == "running", 30, "the standby taking over")
            produce_json(broker.bootstrap, [consolidated(late, first_name="Late")])
            with running_app(web) as app:
                wait_until(lambda: _cached(app.test_client(), late, first_name="Late"), 60, "a record after the handover")
                assert _cached(app.test_client(), early, first_name="Early")
            assert _status(url).instance == "feeder-two"


def test_a_redis_outage_is_reported_and_the_cache_recovers_by_itself(broker, url, redis_server, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    before, during = new_id("before"), new_id("during")
    with running(web) as (app, feeder):
        client = app.test_client()
        produce_json(broker.bootstrap, [consolidated(before, first_name="Before")])
        wait_until(lambda: _cached(client, before), 60, "a record before the outage")
        wait_until(lambda: caught_up(feeder), 30, "lag 0")
        redis_server.stop()
        try:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert any("Redis is unreachable" in r for r in ready.get_json()["reasons"])
            api = client.get("/api/customers")
            assert api.status_code == 503 and "Redis is unreachable" in api.get_json()["reason"]
            page = client.get("/")
            assert page.status_code == 503 and "Redis is down." in page.get_data(as_text=True)
            committed_before = committed(broker.bootstrap, web.consumer_group, CONSOLIDATED)
            produce_json(broker.bootstrap, [consolidated(during, first_name="During")])
            wait_until(lambda: feeder.snapshot().redis_ok is False, 30, "the feeder to notice")
            time.sleep(2)
            # nothing written, nothing committed: the record is still pending in Kafka
            assert committed(broker.bootstrap, web.consumer_group, CONSOLIDATED) == committed_before
            assert feeder.alive() and feeder.snapshot().state == "waiting for redis"
        finally:
            redis_server.restart()  # empty: this redis-server keeps no data across restarts
        # the wiped cache is rebuilt from the topics: the record from before the outage is back too
        wait_until(lambda: _cached(client, during, first_name="During"), 60, "the record sent during the outage")
        assert _cached(client, before, first_name="Before")
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ready again")
        assert "Redis is down." not in client.get("/").get_data(as_text=True)
        assert feeder.snapshot().cache_rebuilds >= 2


def test_cache_reset_on_start_wipes_the_cache_and_rebuilds_it(broker, url, schema_registry):
    keep = new_id("keep")
    produce_json(broker.bootstrap, [consolidated(keep, first_name="Kept")])
    with running(settings(url, broker.bootstrap, schema_registry.url)) as (app, _):
        wait_until(lambda: _cached(app.test_client(), keep), 60, "the record")
    ghost = redis.Redis.from_url(url)
    ghost.hset(cache_mod.customer_key("stale-ghost"), mapping={"first_name": "Ghost"})
    ghost.zadd(cache_mod.IDS, {"stale-ghost": 0})
    with running(settings(url, broker.bootstrap, schema_registry.url, CACHE_RESET_ON_START="true")) as (app, feeder):
        client = app.test_client()
        wait_until(lambda: feeder.snapshot().cache_rebuilds == 1, 30, "the reset")
        assert client.get("/api/customers/stale-ghost").status_code == 404
        wait_until(lambda: _cached(client, keep, first_name="Kept"), 60, "the rebuilt record")


def test_a_cache_of_the_previous_layout_is_rebuilt_not_misread(broker, url, schema_registry):
    keep = new_id("layout")
    produce_json(broker.bootstrap, [consolidated(keep, first_name="Fresh")])
    old = redis.Redis.from_url(url)
    old.hset(cache_mod.META, mapping={"epoch": "from-layout-1", "version": "42"})  # layout 1 had no layout field
    old.hset(cache_mod.customer_key(keep), mapping={"engagement_delivered": "3", "first_name": "Stale"})
    old.zadd(cache_mod.IDS, {keep: 0})
    old.lpush("actions:sent", "{}")
    with running(settings(url, broker.bootstrap, schema_registry.url)) as (app, _):
        got = wait_until(lambda: _cached(app.test_client(), keep, first_name="Fresh"), 60, "the rebuilt record")
        assert "engagement_delivered" not in got
        assert old.hget(cache_mod.META, "layout") == cache_mod.LAYOUT.encode()
        assert not old.exists("actions:sent")


def test_the_feeder_loop_is_supervised_and_a_crash_after_the_write_applies_nothing_twice(
        broker, url, schema_registry, monkeypatch):
    web = settings(url, broker.bootstrap, schema_registry.url)
    first, second = new_id("s1"), new_id("s2")
    with running(web) as (app, feeder):
        client = app.test_client()
        wait_until(lambda: caught_up(feeder), 60, "caught up")
        original = cache_mod.CacheWriter.write_batch
        failures = []

        def write_then_crash(self, *args, **kw):
            version = original(self, *args, **kw)
            if not failures:  # the transaction is in Redis; the Kafka commit never happens
                failures.append(version)
                raise RuntimeError("injected crash between the Redis write and the Kafka commit")
            return version

        monkeypatch.setattr(cache_mod.CacheWriter, "write_batch", write_then_crash)
        records_before = int(redis.Redis.from_url(url).hget(cache_mod.STATS, f"records:{CONSOLIDATED}") or 0)
        produce_json(broker.bootstrap, [consolidated(first, first_name="Survivor")])
        wait_until(lambda: feeder.snapshot().restarts == 1, 30, "the restart")
        assert "injected crash" in feeder.snapshot().last_error
        wait_until(lambda: _cached(client, first, first_name="Survivor"), 60, "the crashed batch")
        produce_json(broker.bootstrap, [consolidated(second)])
        wait_until(lambda: _cached(client, second), 30, "later records")
        wait_until(lambda: caught_up(feeder), 30, "caught up")
        records = int(redis.Redis.from_url(url).hget(cache_mod.STATS, f"records:{CONSOLIDATED}"))
        assert records - records_before == 2, "the written batch was not applied again after the restart"
        assert feeder.alive() and feeder.snapshot().state == "running"
        assert "restarting" not in client.get("/").get_data(as_text=True)


def test_a_kafka_outage_is_reported_and_the_feeder_recovers_by_itself(tmp_path, url, schema_registry):
    own = start_broker(tmp_path / "kafka")  # a broker of its own: this test stops and restarts it
    try:
        own.create_topics([t.name for t in topics.ALL_TOPICS], partitions=1)
        web = settings(url, own.bootstrap, schema_registry.url)
        before, after = new_id("kb"), new_id("ka")
        with running(web) as (app, _):
            client = app.test_client()
            produce_json(own.bootstrap, [consolidated(before, first_name="Before")])
            wait_until(lambda: _cached(client, before), 60, "a record before the outage")
            wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ready")
            own.process.stop()
            wait_until(lambda: client.get("/readyz").status_code == 503, 30, "not ready")
            reasons = client.get("/readyz").get_json()["reasons"]
            assert any("Kafka" in r for r in reasons), reasons
            assert "Kafka is unreachable." in client.get("/").get_data(as_text=True)
            assert _cached(client, before, first_name="Before")  # the cache still serves the last data
            own.process = ServerProcess("kafka", own.process.argv, own.process.log_path)  # same ports and data
            own.process.wait_until(lambda: own.admin().list_topics(timeout=2).brokers, 120, "back")
            produce_json(own.bootstrap, [consolidated(after, first_name="After")])
            wait_until(lambda: _cached(client, after, first_name="After"), 90, "a record after the outage")
            wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ready again")
            assert "Kafka is unreachable." not in client.get("/").get_data(as_text=True)
    finally:
        own.stop()


def test_a_redis_that_restarts_empty_without_any_traffic_is_noticed_and_rebuilt(broker, url, redis_server,
                                                                                 schema_registry):
    quiet = new_id("quiet")
    produce_json(broker.bootstrap, [consolidated(quiet, first_name="Quiet")])
    with running(settings(url, broker.bootstrap, schema_registry.url)) as (app, feeder):
        client = app.test_client()
        wait_until(lambda: _cached(client, quiet), 60, "the record")
        wait_until(lambda: caught_up(feeder), 30, "lag 0")
        redis_server.stop()
        redis_server.restart()  # empty, and no record arrives to make a write fail
        wait_until(lambda: _cached(client, quiet, first_name="Quiet"), 60, "the rebuilt cache")
        assert feeder.snapshot().cache_rebuilds == 2


def test_the_web_app_never_writes_redis(broker, url, schema_registry, monkeypatch):
    """Every command the web app sends is a read, also when a visitor sends actions."""
    import redis.client

    web = settings(url, broker.bootstrap, schema_registry.url)
    who = new_id("reader")
    produce_json(broker.bootstrap, [consolidated(who)])
    with running_feeder(web) as feeder:
        wait_until(lambda: caught_up(feeder), 60, "caught up")
        sent: list[str] = []
        original = redis.client.Redis.execute_command
        original_pipe = redis.client.Pipeline.execute

        def record(self, *args, **options):
            if self.get_connection_kwargs().get("client_name") == "marketing-engine-webapp":
                sent.append(str(args[0]).upper())
            return original(self, *args, **options)

        def record_pipe(self, raise_on_error=True):
            if self.get_connection_kwargs().get("client_name") == "marketing-engine-webapp":
                sent.extend(str(args[0]).upper() for args, _ in self.command_stack)
            return original_pipe(self, raise_on_error)

        monkeypatch.setattr(redis.client.Redis, "execute_command", record)
        monkeypatch.setattr(redis.client.Pipeline, "execute", record_pipe)
        with running_app(web) as app:
            client = app.test_client()
            for path in ("/", "/insights", f"/customers/{who}", "/api/customers?q=ada", "/api/insights",
                         f"/api/customers/{who}/history", "/readyz", "/api/status", "/fragments/insights"):
                assert client.get(path).status_code in (200, 503), path
            form = client.get(f"/customers/{who}").get_data(as_text=True)
            token = form.split('name="csrf_token" type="hidden" value="', 1)[1].split('"', 1)[0]
            assert client.post(f"/customers/{who}/orders", data={"csrf_token": token}).status_code == 303
            assert "order" in client.get(f"/customers/{who}").get_data(as_text=True)
        # EVALSHA_RO: Redis itself refuses a write inside it; SCRIPT LOAD only caches that script
        reads = {"GET", "HGET", "HGETALL", "HMGET", "ZCARD", "ZRANGE", "ZREVRANGE", "ZRANGEBYLEX", "ZREVRANGEBYSCORE",
                 "ZMSCORE", "EVALSHA_RO", "SCRIPT LOAD", "PING", "CLIENT SETNAME", "CLIENT", "HELLO", "AUTH", "SELECT"}
        assert sent and set(sent) <= reads, sorted(set(sent) - reads)
