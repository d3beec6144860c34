"""The consistency check's report in the web UI, against the real Kafka broker, the real redis-server and
the Schema Registry test double: a report published to ``dom.pipeline.consistency.v1`` reaches the cache
(``insights:consistency``), /api/insights, the insights page and the feeder's status (``make status``);
the newest report wins; a report that does not match its contract never reaches the cache and is counted
per kind like every other mismatch; before any report the page says so."""

from __future__ import annotations

import html as html_lib
import re
import time

import redis

from schemas import topics
from tests.engines.test_webapp_helpers import (
    avro_codec,
    caught_up,
    produce,
    running,
    running_app,
    settings,
    wait_until,
)
from tests.support.samples import SAMPLES
from webapp import cache as cache_mod
from webapp.status import ConsistencyReport

TOPIC = topics.CONSISTENCY
KEY = "consistency"


def _report(checked_at: int, **overrides) -> dict:
    # The session broker's topic is shared: later tests' reports are newer (checked_at from the clock).
    return {**SAMPLES[TOPIC.name], "checked_at": checked_at, **overrides}


def _api_report(client, checked_at: int) -> dict | None:
    body = client.get("/api/insights").get_json()
    found = body.get("consistency")
    return found if found and found["checked_at"] == checked_at else None


def test_a_report_reaches_the_cache_the_api_the_page_and_the_feeders_status(broker, url, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    codec = avro_codec(schema_registry.url, TOPIC)
    now = int(time.time() * 1000)
    older = _report(now - 120_000, customers=1000, checked=1000, agreeing=1000, disagreeing=0, catching_up=0,
                    examples=[])
    current = _report(now, customers=1000, checked=996, agreeing=994, disagreeing=2, catching_up=4, examples=[
        {"customer_id": "c-0042", "metric": "lifetime_value", "view": "782.33", "gold": "7823.3"},
        {"customer_id": "c-0077", "metric": "order_count", "view": None, "gold": "3"},
    ])
    # the newer run first, then an older one finishing late: the newest run is the current report
    produce(broker.bootstrap, TOPIC.name, [(KEY, codec.serialize(current)), (KEY, codec.serialize(older))])
    with running(web) as (app, feeder):
        client = app.test_client()
        got = wait_until(lambda: _api_report(client, now), 60, "the report in /api/insights")
        assert {k: got[k] for k in ("customers", "checked", "agreeing", "disagreeing", "catching_up", "settle_ms")} == {
            "customers": 1000, "checked": 996, "agreeing": 994, "disagreeing": 2, "catching_up": 4,
            "settle_ms": current["settle_ms"]}
        assert got["examples"] == current["examples"] and got["metrics"] == current["metrics"]
        wait_until(lambda: caught_up(feeder), 30, "caught up")
        assert _api_report(client, now), "the older report read after it did not replace it"
        stored = ConsistencyReport.from_json(redis.Redis.from_url(url, decode_responses=True).get(cache_mod.CONSISTENCY))
        assert stored is not None and stored.checked_at == now and stored.disagreeing == 2
        # make status asks the feeder: its status carries the same report
        status = wait_until(lambda: (s := feeder.snapshot()).consistency and s, 10, "the report in the status")
        assert status.consistency == stored
        assert status.topics[TOPIC.name].records >= 2

        page = client.get("/insights").get_data(as_text=True)
        panel = page.split('id="consistency"', 1)[1].split("</section>", 1)[0]
        assert "Consistency: ksqlDB view vs gold" in panel
        numbers = dict(re.findall(r'data-number="(\w+)"[^>]*>([\d,]+)<', panel))
        assert numbers == {"checked": "996", "agreeing": "994", "disagreeing": "2", "catching_up": "4"}
        assert f'data-ms="{now}"' in panel
        row = panel.split('data-customer="c-0042"', 1)[1].split("</tr>", 1)[0]
        assert 'href="/customers/c-0042"' in row and 'data-field="view">782.33<' in row \
            and 'data-field="gold">7823.3<' in row and "lifetime_value" in row
        missing = panel.split('data-customer="c-0077"', 1)[1].split("</tr>", 1)[0]
        assert 'data-field="view">not in the view<' in missing
        assert "No report yet" not in page
        # the live refresh's fragment is the same panel
        fragment = client.get("/fragments/insights").get_data(as_text=True)
        assert 'data-number="disagreeing"' in fragment and "c-0042" in fragment


def test_a_report_not_matching_its_contract_never_reaches_the_cache_and_is_counted(broker, url, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    codec = avro_codec(schema_registry.url, TOPIC)
    now = int(time.time() * 1000)
    good = _report(now, checked=10, agreeing=10, disagreeing=0, catching_up=0, examples=[])
    produce(broker.bootstrap, TOPIC.name, [(KEY, codec.serialize(good))])
    with running(web) as (app, feeder):
        client = app.test_client()
        wait_until(lambda: _api_report(client, now), 60, "the good report")
        wait_until(lambda: caught_up(feeder), 30, "caught up")
        before = dict(feeder.snapshot().topics[TOPIC.name].mismatches)
        produce(broker.bootstrap, TOPIC.name, [
            (KEY, b"\x07not avro"),
            (KEY, codec.serialize(_report(now + 1000, checked=10, agreeing=3, disagreeing=3))),  # 10 != 3 + 3
            ("c-0042", codec.serialize(_report(now + 2000))),  # a customer's key: not a report
        ])
        expected = {"value is not Confluent-framed Avro": 1, "checked is not agreeing + disagreeing": 1,
                    "key is not 'consistency'": 1}

        def counted():
            after = feeder.snapshot().topics[TOPIC.name].mismatches
            return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0)} == expected

        wait_until(counted, 60, "the three mismatches counted")
        assert _api_report(client, now), "the cached report is still the good one"
        stored = redis.Redis.from_url(url, decode_responses=True).hgetall(cache_mod.MISMATCHES)
        assert all(int(stored[f"{TOPIC.name}{cache_mod.SEP}{kind}"]) >= 1 for kind in expected)

        def row() -> str:  # the page reads the status the feeder writes every few seconds
            page = client.get("/insights").get_data(as_text=True)
            return page.split(f'data-topic="{TOPIC.name}"', 1)[1].split("</tr>", 1)[0]

        shown = wait_until(lambda: re.search(r'data-field="mismatches"><span class="warn"[^>]*>\d+<', r := row())
                           and r, 15, "the mismatches on the insights page")
        assert "consistency reports" in html_lib.unescape(shown)


def test_before_any_report_the_page_and_the_api_say_there_is_none(url):
    with running_app(settings(url)) as app:
        client = app.test_client()
        assert client.get("/api/insights").get_json()["consistency"] is None
        page = client.get("/insights").get_data(as_text=True)
        assert 'id="consistency-empty"' in page and "No report yet" in page


def test_verify_reads_the_newest_report_with_its_consumer_after_the_hops(broker, schema_registry):
    """make verify's line beside the hops (verify.follow._Topics.newest_consistency), on the real broker."""
    from verify.follow import _Topics
    from verify.settings import VerifySettings

    codec = avro_codec(schema_registry.url, TOPIC)
    now = int(time.time() * 1000)
    produce(broker.bootstrap, TOPIC.name, [(KEY, codec.serialize(_report(now - 5_000, checked=7, agreeing=7,
                                                                          disagreeing=0, customers=9,
                                                                          catching_up=2)))])
    feed = _Topics(VerifySettings(bootstrap_servers=broker.bootstrap, schema_registry_url=schema_registry.url),
                   [topics.PROPENSITY_SCORE.name])
    try:
        line = feed.newest_consistency()
    finally:
        feed.close()
    assert line is not None and line.startswith("7/9 checked, 7 agree, 0 disagree, 2 catching up (checked "), line
    nowhere = _Topics(VerifySettings(bootstrap_servers=broker.bootstrap, schema_registry_url="http://127.0.0.1:9"),
                      [topics.PROPENSITY_SCORE.name])
    try:
        assert nowhere.newest_consistency(timeout=2).startswith("not read ("), "never raises"
    finally:
        nowhere.close()
