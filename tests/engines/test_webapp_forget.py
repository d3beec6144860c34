"""Forgetting a customer in the web UI's cache, on the real broker and the real redis-server (the
Schema Registry is the TEST DOUBLE): the request published by python -m forget's code reaches the
feeder, which erases the customer's hash, index, search and counter entries; a later record of the
view (ksqlDB keeps the aggregated profile: confluentinc/ksql#6938) does not bring the personal fields
back. The check is a scan of every key in Redis with every value dumped, not a look at known keys."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import redis

from forget import check, request
from forget.settings import ForgetSettings
from schemas import topics
from tests.engines.test_webapp_helpers import (
    caught_up,
    consolidated,
    enriched_order,
    ensure_topics,
    new_id,
    produce_avro,
    produce_json,
    running,
    score,
    segment,
    settings,
    wait_until,
)
from webapp import cache as cache_mod

T0 = 1_767_225_600_000


def dump_everything(client: redis.Redis) -> str:
    """Every key and every value in the database, lower-cased (the search index lower-cases terms)."""
    parts: list[str] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == "string":
            parts.append(client.get(key) or "")
        elif kind == "hash":
            parts.extend(f"{k}={v}" for k, v in client.hgetall(key).items())
        elif kind == "zset":
            parts.extend(client.zrange(key, 0, -1))
        elif kind == "list":
            parts.extend(client.lrange(key, 0, -1))
        elif kind == "set":
            parts.extend(client.smembers(key))
        else:
            parts.append(f"<{kind}>")
    return "\n".join(parts).lower()


def person(tag: str) -> dict:
    mark = uuid.uuid4().hex[:8]
    return {"first_name": f"{tag}first{mark}", "last_name": f"{tag}last{mark}",
            "email": f"{tag}.{mark}@forget.example", "phone": f"+3247{int(mark, 16) % 10**7:07d}"}


def feed(bootstrap: str, registry: str, customer_id: str, who: dict, at: int) -> None:
    """What the view topics carry for a customer with an order and a score (personal fields included)."""
    produce_json(bootstrap, [consolidated(customer_id, **who, order_count=1, lifetime_value=42.0, last_order_at=at)])
    produce_json(bootstrap, [enriched_order(customer_id, str(uuid.uuid4()), 42.0, at, **{
        k: who[k] for k in ("first_name", "last_name", "email")})], topic=topics.ORDER_ENRICHED.name)
    produce_avro(bootstrap, registry, topics.PROPENSITY_SCORE, [score(customer_id, 0.9, at)])
    produce_avro(bootstrap, registry, topics.SEGMENT_MATERIALIZED, [segment(customer_id, "vip_evangelist")])


def traces(dump: str, who: dict) -> list[str]:
    return [v for v in who.values() if v.lower() in dump]


def test_erasure_removes_every_trace_and_later_view_records_do_not_bring_it_back(kafka_broker, url,
                                                                                   schema_registry):
    ensure_topics(kafka_broker)
    web = settings(url, kafka_broker.bootstrap, schema_registry.url)
    gone, kept = new_id("gone"), new_id("kept")
    gone_who, kept_who = person("gone"), person("kept")
    feed(kafka_broker.bootstrap, schema_registry.url, gone, gone_who, T0)
    feed(kafka_broker.bootstrap, schema_registry.url, kept, kept_who, T0)
    client = redis.Redis.from_url(url, decode_responses=True)
    forget = ForgetSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
                                      "SCHEMA_REGISTRY_URL": schema_registry.url})
    with running(web) as (app, feeder):
        api = app.test_client()
        wait_until(lambda: api.get(f"/api/customers/{gone}").status_code == 200
                   and caught_up(feeder), 60, "both customers in the cache")
        before = dump_everything(client)
        # the scan sees what it looks for: every personal field of both is in Redis before the request
        assert traces(before, gone_who) == list(gone_who.values())
        assert traces(before, kept_who) == list(kept_who.values())
        listed_before = client.zcard(cache_mod.IDS)
        segments_before = int(client.hget(cache_mod.SEGMENTS, "vip_evangelist") or 0)

        request.publish(forget, request.build(gone, "test"))
        wait_until(lambda: client.hexists(cache_mod.customer_key(gone), cache_mod.ERASED), 60, "the erasure")
        # ksqlDB's view still holds the profile: its next record of the customer (a new order) carries it
        feed(kafka_broker.bootstrap, schema_registry.url, gone, gone_who, T0 + 60_000)
        request.publish(forget, request.build(gone, "test"))  # twice is fine
        wait_until(lambda: caught_up(feeder), 60, "the feeder to read the later records")

        after = dump_everything(client)
        assert traces(after, gone_who) == [], "personal data of the forgotten customer is still in Redis"
        assert traces(after, kept_who) == list(kept_who.values())  # the other customer is untouched
        assert client.hgetall(cache_mod.customer_key(gone)).keys() == {cache_mod.ERASED}
        assert api.get(f"/api/customers/{gone}").status_code == 404
        assert client.zcard(cache_mod.IDS) == listed_before - 1
        assert int(client.hget(cache_mod.SEGMENTS, "vip_evangelist") or 0) == segments_before - 1
        # no index or search entry names the id any more (only the marker's hash key does)
        assert [k for k in client.scan_iter(count=1000)
                if gone in k] == [cache_mod.customer_key(gone)]
        for key in client.scan_iter(match="customers:*", count=1000):
            assert not any(gone in m for m in client.zrange(key, 0, -1)), key
        assert api.get(f"/api/customers/{kept}").status_code == 200


def test_make_forgets_check_finds_the_customer_until_the_cache_and_ksqldb_have_erased_it(kafka_broker, url,
                                                                                          schema_registry):
    """python -m forget.check (make forget's last step) on the same stores: before the request it names
    what the cache and ksqlDB's view still hold; after the feeder's erasure and ksqlDB's record of the
    redacted profile (written here as ksqlDB writes it), it finds nothing and exits 0."""
    ensure_topics(kafka_broker)
    web = settings(url, kafka_broker.bootstrap, schema_registry.url)
    gone, kept = new_id("gone"), new_id("kept")
    who = person("gone")
    feed(kafka_broker.bootstrap, schema_registry.url, gone, who, T0)
    feed(kafka_broker.bootstrap, schema_registry.url, kept, person("kept"), T0)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "SCHEMA_REGISTRY_URL": schema_registry.url,
           "REDIS_URL": url, "FORGET_CHECK_WAIT_S": "0"}
    checked = check.CheckSettings.from_env(env)
    client = redis.Redis.from_url(url, decode_responses=True)
    with running(web) as (app, feeder):
        wait_until(lambda: app.test_client().get(f"/api/customers/{gone}").status_code == 200
                   and caught_up(feeder), 60, "the customer in the cache")
        found = check.redis_traces(client, gone)
        assert any("has no _erased marker" in f for f in found) and any("lists the customer" in f for f in found)
        assert check.view_traces(check.newest_view_record(checked, gone)) == [
            f"ksqlDB view: {field} is not redacted yet" for field in ("email", "first_name", "last_name", "phone")]

        record = request.build(gone, "test")
        request.publish(ForgetSettings.from_env(env), record)
        wait_until(lambda: client.hexists(cache_mod.customer_key(gone), cache_mod.ERASED), 60, "the erasure")
        assert check.view_traces(check.newest_view_record(checked, gone)) != []  # ksqlDB has not answered yet
        redacted = request.redacted_profile(record)
        produce_json(kafka_broker.bootstrap, [consolidated(gone, **{k: redacted[k] for k in request.REDACTED},
                                                          order_count=1, lifetime_value=42.0, last_order_at=T0)])
        wait_until(lambda: caught_up(feeder), 60, "the feeder to read ksqlDB's record")
        assert check.redis_traces(client, gone) == []
        assert check.newest_view_record(checked, gone).value["email"] == ""
        done = subprocess.run([sys.executable, "-m", "forget.check", gone], capture_output=True, text=True,
                              timeout=120, env={**os.environ, **env})
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[0] == f"forget.check: customer {gone}: erased everywhere it looked"
        assert "web UI cache (Redis): only the erasure marker (request of 20" in done.stdout
        assert f"ksqlDB view ({topics.CUSTOMER_CONSOLIDATED.name}): the redacted profile, written 20" in done.stdout
        print(done.stdout.strip())  # DEMO.md section 7 shows this line
        assert check.redis_traces(client, kept) != []  # the other customer is still there (no marker)
    bad = subprocess.run([sys.executable, "-m", "forget.check", "x y"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == "forget.check: not a customer id: 'x y'"
