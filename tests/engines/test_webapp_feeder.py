"""The cache consumer against the real Kafka broker, the real redis-server and the Schema Registry
test double: records of the three topics reach the cache and the API, restarts resume from the
committed offsets, Redis and Kafka outages recover by themselves, malformed records are skipped and
counted, and the consumer thread is supervised."""

from __future__ import annotations

import json
import time

import pytest

from schemas import serde, topics
from tests.engines.test_webapp_helpers import (
    committed,
    consolidated,
    db_url,
    end_offsets,
    ensure_topics,
    flush,
    new_id,
    produce,
    produce_avro,
    produce_json,
    running_app,
    settings,
    wait_until,
)
from tests.support.kafka_broker import start_broker
from tests.support.procs import ServerProcess
from webapp import cache as cache_mod

CONSOLIDATED = topics.CUSTOMER_CONSOLIDATED.name


@pytest.fixture
def url(redis_server):
    url = db_url(redis_server)
    flush(url)
    yield url
    flush(url)


@pytest.fixture
def broker(kafka_broker):
    ensure_topics(kafka_broker)
    return kafka_broker


def _cached(client, customer_id: str, **want):
    """The API's view of a customer once it has every wanted value (else None)."""
    response = client.get(f"/api/customers/{customer_id}")
    if response.status_code != 200:
        return None
    body = response.get_json()
    return body if all(body.get(k) == v for k, v in want.items()) else None


def _committed_everything(bootstrap: str, group: str) -> bool:
    ends = {p: o for p, o in end_offsets(bootstrap, CONSOLIDATED).items() if o > 0}
    done = committed(bootstrap, group, CONSOLIDATED)
    return bool(ends) and all(done[p] == o for p, o in ends.items())


def _caught_up(app) -> bool:
    status = app.extensions["marketing_engine"].feeder.status()
    return status["state"] == "running" and status["lag"] == 0 and bool(status["assigned"])


def test_records_of_the_three_topics_reach_the_cache_and_the_api(broker, url, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    a, b = new_id("a"), new_id("b")
    with running_app(web) as app:
        client = app.test_client()
        # the consolidated view as ksqlDB writes it (lower-case columns, nulls) ...
        produce_json(broker.bootstrap, [consolidated(
            a, first_name="Grace", last_name="Hopper", email="grace@example.com", lifecycle_stage="customer",
            order_count=3, lifetime_value=123.45, last_order_at=1_767_300_000_000, delivered_count=4,
            failed_count=1, last_engagement_at=1_767_200_000_000, phone=None)])
        # ... and as the issue describes it (UPPER-CASE names, aliases), keyed by a JSON string
        upper = {"CUSTOMER_ID": b, "FIRST_NAME": "Alan", "LAST_NAME": "Turing", "EMAIL": "alan@example.com",
                 "LIFECYCLE_STAGE": "prospect", "ORDER_COUNT": None, "LIFETIME_VALUE": None,
                 "DELIVERED_COUNT": 2, "FAILED_COUNT": None, "UPDATED_AT": 1_767_400_000_000}
        produce(broker.bootstrap, CONSOLIDATED, [(json.dumps(b).encode(), json.dumps(upper).encode())])
        produce_avro(broker.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE, [
            {"customer_id": a, "score": 0.73, "model_version": "lr-1", "behavioural_stage": "loyal",
             "scored_at": 1_767_500_000_000}])
        produce_avro(broker.bootstrap, schema_registry.url, topics.SEGMENT_MATERIALIZED, [
            {"customer_id": a, "segment": "loyal", "lifecycle_stage": "customer", "lifetime_value": 123.45,
             "order_count": 3}])
        got = wait_until(lambda: _cached(client, a, segment="loyal", propensity_score=0.73), 60, "customer a")
        assert {k: got[k] for k in ("first_name", "last_name", "email", "lifecycle_stage", "order_count",
                                    "lifetime_value", "engagement_delivered", "engagement_failed",
                                    "behavioural_stage", "model_version", "phone", "is_active")} == {
            "first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com",
            "lifecycle_stage": "customer", "order_count": 3, "lifetime_value": 123.45,
            "engagement_delivered": 4, "engagement_failed": 1, "behavioural_stage": "loyal",
            "model_version": "lr-1", "phone": None, "is_active": True}
        assert got["last_activity"] == 1_767_300_000_000  # the latest of order / engagement / profile times
        assert got["scored_at"] == 1_767_500_000_000
        other = wait_until(lambda: _cached(client, b, first_name="Alan"), 30, "customer b")
        assert other["order_count"] is None and other["lifetime_value"] is None
        assert other["engagement_delivered"] == 2 and other["last_activity"] == 1_767_400_000_000
        listed = client.get("/api/customers", query_string={"q": "grace@", "sort": "propensity_score"}).get_json()
        assert [r["customer_id"] for r in listed["items"]] == [a]
        assert listed["items"][0]["segment"] == "loyal"
        wait_until(lambda: _caught_up(app), 30, "lag 0")
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json()["consumer"]["lag"] == 0


def test_malformed_records_are_skipped_and_counted_and_the_rest_still_flows(broker, url, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    good, late = new_id("good"), new_id("late")
    with running_app(web) as app:
        feeder = app.extensions["marketing_engine"].feeder
        client = app.test_client()
        wait_until(lambda: _caught_up(app), 60, "the consumer caught up with earlier tests' records")
        before = dict(feeder.status()["malformed"])
        produce(broker.bootstrap, CONSOLIDATED, [
            (new_id(), b"{not json"),
            (new_id(), b"[1, 2, 3]"),
            (None, json.dumps({"first_name": "No", "last_name": "Id"}).encode()),  # no key, no id in value
            ("bad id with spaces", json.dumps(consolidated("x")).encode()),
        ])
        codec = serde.TopicSerde(serde.registry_client(schema_registry.url), topics.PROPENSITY_SCORE)
        valid = codec.serialize({"customer_id": good, "score": 0.5, "model_version": "m", "behavioural_stage": "new",
                                 "scored_at": 1})
        produce(broker.bootstrap, topics.PROPENSITY_SCORE.name, [
            (good, b"\x07not-a-confluent-frame"),
            (good, serde.frame(987_654, b"\x02\x04")),  # a schema id the registry does not know
            (good, valid[:9]),  # truncated Avro body
        ])
        produce_json(broker.bootstrap, [consolidated(good, first_name="Good")])
        produce_avro(broker.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE, [
            {"customer_id": good, "score": 0.5, "model_version": "m", "behavioural_stage": "new", "scored_at": 1}])
        produce_json(broker.bootstrap, [consolidated(late, first_name="Late")])
        wait_until(lambda: _cached(client, good, propensity_score=0.5), 60, "the good records")
        wait_until(lambda: _cached(client, late), 30, "a record after the malformed ones")
        status = feeder.status()
        delta = {t: n - before.get(t, 0) for t, n in status["malformed"].items()}
        assert delta == {CONSOLIDATED: 4, topics.PROPENSITY_SCORE.name: 3}
        assert status["alive"] and status["restarts"] == 0 and status["last_error"] is None
        meta = app.extensions["marketing_engine"].cache.meta()
        assert meta["malformed"][CONSOLIDATED] >= 4  # also counted in Redis, for every worker to see
        assert client.get("/readyz").status_code == 200


def test_a_restart_resumes_from_the_committed_offsets_with_nothing_lost(broker, url, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    first = [new_id("first") for _ in range(20)]
    second = [new_id("second") for _ in range(15)]
    produce_json(broker.bootstrap, [consolidated(c, order_count=1) for c in first])
    with running_app(web) as app:
        client = app.test_client()
        wait_until(lambda: all(_cached(client, c) for c in first), 60, "the first records")
        wait_until(lambda: _caught_up(app), 30, "lag 0")
    # stopped: the group's committed offsets are at the end of the topic
    assert _committed_everything(broker.bootstrap, web.consumer_group)
    produce_json(broker.bootstrap, [consolidated(c, order_count=2) for c in second])
    produce_json(broker.bootstrap, [consolidated(first[0], order_count=7)])
    with running_app(web) as app:  # same group, same Redis: a restarted process
        client = app.test_client()
        wait_until(lambda: all(_cached(client, c, order_count=2) for c in second), 60, "the second records")
        wait_until(lambda: _cached(client, first[0], order_count=7), 30, "the update")
        assert all(_cached(client, c, order_count=1) for c in first[1:])
        status = app.extensions["marketing_engine"].feeder.status()
        assert status["records"] == len(second) + 1  # resumed: nothing consumed twice, nothing skipped
        assert status["restarts"] == 0
    assert _committed_everything(broker.bootstrap, web.consumer_group)


def test_a_redis_outage_is_reported_and_the_cache_recovers_by_itself(broker, url, redis_server, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    before, during = new_id("before"), new_id("during")
    with running_app(web) as app:
        client = app.test_client()
        produce_json(broker.bootstrap, [consolidated(before, first_name="Before")])
        wait_until(lambda: _cached(client, before), 60, "a record before the outage")
        wait_until(lambda: _caught_up(app), 30, "lag 0")
        redis_server.stop()
        try:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert any("Redis is unreachable" in r for r in ready.get_json()["reasons"])
            api = client.get("/api/customers")
            assert api.status_code == 503 and "Redis is unreachable" in api.get_json()["reason"]
            page = client.get("/")
            assert page.status_code == 503
            assert "Redis is down." in page.get_data(as_text=True)
            committed_before = committed(broker.bootstrap, web.consumer_group, CONSOLIDATED)
            produce_json(broker.bootstrap, [consolidated(during, first_name="During")])
            feeder = app.extensions["marketing_engine"].feeder
            wait_until(lambda: feeder.status()["redis_ok"] is False, 30, "the consumer to notice")
            time.sleep(2)
            # nothing written, nothing committed: the record is still pending in Kafka
            assert committed(broker.bootstrap, web.consumer_group, CONSOLIDATED) == committed_before
            assert feeder.status()["alive"]
        finally:
            redis_server.restart()  # empty: this redis-server keeps no data across restarts
        # the wiped cache is rebuilt from the topics: the record from before the outage is back too
        wait_until(lambda: _cached(client, during, first_name="During"), 60, "the record sent during the outage")
        assert _cached(client, before, first_name="Before")
        wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ready again")
        assert "Redis is down." not in client.get("/").get_data(as_text=True)
        assert app.extensions["marketing_engine"].feeder.status()["cache_rebuilds"] >= 2


def test_cache_reset_on_start_wipes_the_cache_and_rebuilds_it(broker, url, schema_registry):
    keep = new_id("keep")
    produce_json(broker.bootstrap, [consolidated(keep, first_name="Kept")])
    with running_app(settings(url, broker.bootstrap, schema_registry.url)) as app:
        client = app.test_client()
        wait_until(lambda: _cached(client, keep), 60, "the record")
        cache = app.extensions["marketing_engine"].cache
        cache.redis.hset(cache_mod.customer_key("stale-ghost"), mapping={"customer_id": "stale-ghost"})
        cache.redis.zadd(cache_mod.IDS, {"stale-ghost": 0})
    with running_app(settings(url, broker.bootstrap, schema_registry.url, CACHE_RESET_ON_START="true")) as app:
        client = app.test_client()
        feeder = app.extensions["marketing_engine"].feeder
        wait_until(lambda: feeder.status()["cache_rebuilds"] == 1, 30, "the reset")  # done by the consumer thread
        assert client.get("/api/customers/stale-ghost").status_code == 404
        wait_until(lambda: _cached(client, keep, first_name="Kept"), 60, "the rebuilt record")
        assert client.get("/api/customers/stale-ghost").status_code == 404


def test_the_consumer_thread_is_supervised_restarted_and_reported(broker, url, schema_registry, monkeypatch):
    web = settings(url, broker.bootstrap, schema_registry.url)
    first, second = new_id("s1"), new_id("s2")
    with running_app(web) as app:
        client = app.test_client()
        feeder = app.extensions["marketing_engine"].feeder
        wait_until(lambda: _caught_up(app), 60, "caught up")
        original = feeder._handle
        failures = []

        def crash_once(consumer, messages):
            if not failures:
                failures.append(1)
                raise RuntimeError("injected failure in the consumer loop")
            return original(consumer, messages)

        monkeypatch.setattr(feeder, "_handle", crash_once)
        produce_json(broker.bootstrap, [consolidated(first, first_name="Survivor")])
        wait_until(lambda: feeder.status()["restarts"] == 1, 30, "the restart")
        status = feeder.status()
        assert "injected failure" in status["last_error"]
        # the batch that crashed is not lost: it is re-read after the restart
        wait_until(lambda: _cached(client, first, first_name="Survivor"), 60, "the crashed batch")
        produce_json(broker.bootstrap, [consolidated(second)])
        wait_until(lambda: _cached(client, second), 30, "later records")
        assert feeder.status()["alive"] and feeder.status()["state"] == "running"
        # a thread that ended is restarted by the next health evaluation (e.g. /readyz)
        feeder._stop.set()
        feeder._thread.join(20)
        assert not feeder.alive
        feeder._stop.clear()
        client.get("/readyz")
        assert feeder.alive and feeder.status()["restarts"] == 2


def test_a_kafka_outage_is_reported_and_the_consumer_recovers_by_itself(tmp_path, url, schema_registry):
    own = start_broker(tmp_path / "kafka")  # a broker of its own: this test stops and restarts it
    try:
        own.create_topics([t.name for t in topics.ALL_TOPICS], partitions=1)
        web = settings(url, own.bootstrap, schema_registry.url)
        before, after = new_id("kb"), new_id("ka")
        with running_app(web) as app:
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
    with running_app(settings(url, broker.bootstrap, schema_registry.url)) as app:
        client = app.test_client()
        wait_until(lambda: _cached(client, quiet), 60, "the record")
        wait_until(lambda: _caught_up(app), 30, "lag 0")
        redis_server.stop()
        redis_server.restart()  # empty, and no record arrives to make a write fail
        wait_until(lambda: _cached(client, quiet, first_name="Quiet"), 60, "the rebuilt cache")
        assert app.extensions["marketing_engine"].feeder.status()["cache_rebuilds"] == 2
