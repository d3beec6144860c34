"""The web UI in headless Chromium (the Debian system browser driven by Playwright; nothing downloaded):
load the table, create a customer through the form, see the published event on the real broker, watch
the page refresh by itself when the pipeline's view arrives, and keep screenshots under test-output/."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import threading
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from werkzeug.serving import make_server

from schemas import serde, topics
from seed import events
from tests.engines.test_webapp_helpers import (
    caught_up,
    consolidated,
    db_url,
    ensure_topics,
    flush,
    produce_avro,
    produce_json,
    running_feeder,
    settings,
    wait_until,
)
from tests.support.http_proxy_double import HttpProxyDouble
from tests.support.kafka_broker import start_broker
from tests.support.paths import OUTPUT
from webapp.records import FEED_TOPICS

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _require_chromium() -> None:
    if shutil.which(CHROMIUM) is None:
        message = f"Chromium not found at {CHROMIUM} (Debian package `chromium`)"
        if os.environ.get("CI"):
            pytest.fail(message + ": required under CI")
        pytest.skip(message)


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="webapp-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        app.extensions["marketing_engine"].close()


def _profile_events(bootstrap: str, registry_url: str):
    """A reader positioned at the current end of the profile topic."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"browser-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    name = topics.CUSTOMER_PROFILE.name
    parts = consumer.list_topics(name, timeout=10).topics[name].partitions
    consumer.assign([TopicPartition(name, p, consumer.get_watermark_offsets(TopicPartition(name, p), 10)[1])
                     for p in parts])
    return consumer, serde.TopicSerde(serde.registry_client(registry_url), topics.CUSTOMER_PROFILE)


@pytest.fixture
def kafka_broker(tmp_path):
    """A broker of its own (not the session's): the table then shows exactly this test's customers."""
    broker = start_broker(tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.stop()


def test_create_a_customer_in_the_browser_and_watch_the_pipeline_view_arrive(kafka_broker, redis_server,
                                                                             schema_registry):
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    ensure_topics(kafka_broker)
    url = db_url(redis_server)
    flush(url)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shots = {name: OUTPUT / f"webapp-browser-{name}.png" for name in ("table", "sent", "arrived", "redis-down",
                                                                        "forget")}
    for shot in shots.values():
        shot.unlink(missing_ok=True)

    # a few customers already through the pipeline, so the table is not empty
    stages = ("prospect", "customer", "evangelist", "churn-risk")
    known = [str(uuid.uuid4()) for _ in range(6)]  # ids as the seed makes them
    produce_json(kafka_broker.bootstrap, [
        consolidated(cid, first_name=first, last_name=last, email=f"{first.lower()}.{last.lower()}@example.com",
                     lifecycle_stage=stages[i % 4], order_count=i * 2, lifetime_value=round(37.5 * i * i, 2),
                     activations_delivered=i + 1, activations_failed=i % 2,
                     last_order_at=1_767_225_600_000 + i * 86_400_000)
        for i, (cid, (first, last)) in enumerate(zip(known, [
            ("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Edsger", "Dijkstra"),
            ("Barbara", "Liskov"), ("Donald", "Knuth")], strict=True))])
    produce_avro(kafka_broker.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE, [
        {"customer_id": cid, "score": round(0.1 + 0.15 * i, 2), "model_version": "lr-test",
         "behavioural_stage": ("new", "active", "loyal", "lapsed")[i % 4], "scored_at": 1_767_225_600_000}
        for i, cid in enumerate(known)])
    produce_avro(kafka_broker.bootstrap, schema_registry.url, topics.SEGMENT_MATERIALIZED, [
        {"customer_id": cid, "segment": ("new_prospect", "nurture", "vip_evangelist", "at_risk")[i % 4],
         "lifecycle_stage": None, "lifetime_value": None, "order_count": None} for i, cid in enumerate(known)])

    consumer, codec = _profile_events(kafka_broker.bootstrap, schema_registry.url)
    with contextlib.closing(consumer), HttpProxyDouble(schema_registry, forward_bootstrap=kafka_broker.bootstrap) as proxy:
        web = settings(url, kafka_broker.bootstrap, schema_registry.url, PUBLISH_TRANSPORT="rest",
                       REST_PROXY_URL=proxy.url, REFRESH_INTERVAL_MS="500")
        from webapp import create_app

        with running_feeder(web), serving(create_app(web)) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            problems: list[str] = []
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            # (a poll cut short by a navigation is aborted, not failed)
            page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "")
                    and problems.append(f"request failed: {r.url}: {r.failure}"))
            page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
            try:
                page.goto(f"{base}/?sort=last_activity&dir=desc")
                rows = page.locator("table.customers tbody tr[data-customer]")
                expect(rows).to_have_count(6, timeout=30_000)  # the live refresh fills the table
                assert page.locator("table.customers thead th").nth(3).inner_text().strip() == "Declared stage"
                expect(page.locator('[data-check="kafka"]')).to_have_text("Kafka up", timeout=20_000)
                expect(page.locator('[data-check="feeder"]')).to_have_text("feeder running")
                page.screenshot(path=str(shots["table"]), full_page=True)

                # create a customer through the form
                page.fill("#first_name", "Katherine")
                page.fill("#last_name", "Johnson")
                page.select_option("#lifecycle_stage", "evangelist")
                page.click("text=Create customer")
                page.wait_for_url(f"{base}/customers/*")
                customer_id = page.url.rsplit("/", 1)[1]
                expect(page.locator(".flash-sent")).to_contain_text("Sent: customer Katherine Johnson")
                expect(page.locator("#customer-body")).to_contain_text("Not in the consolidated view yet")
                expect(page.locator("#actions .action.sent .badge")).to_have_text("sent · waiting for the pipeline")
                page.screenshot(path=str(shots["sent"]), full_page=True)

                # the published event, as it arrived on the broker (through the HTTP proxy)
                def arrived():
                    msg = consumer.poll(0.5)
                    if msg is None or msg.error():
                        return None
                    return msg if msg.key().decode() == customer_id else None

                msg = wait_until(arrived, 30, "the profile event on the broker", interval=0)
                event = codec.deserialize(msg.value())
                assert (event["customer_id"], event["first_name"], event["last_name"], event["lifecycle_stage"]) \
                    == (customer_id, "Katherine", "Johnson", "evangelist")
                assert serde.parse_frame(msg.value())[0] > 0  # framed with a registered schema id
                assert [r["customer_id"] for r in proxy.decoded(topics.CUSTOMER_PROFILE.name)] == [customer_id]

                # the pipeline's view arrives (what ksqlDB and the score job write for this event):
                # the open page updates by itself, no reload
                produce_json(kafka_broker.bootstrap, [consolidated(
                    customer_id, first_name="Katherine", last_name="Johnson", email=event["email"],
                    lifecycle_stage="evangelist", created_at=serde.to_millis(event["created_at"]),
                    profile_updated_at=serde.to_millis(event["updated_at"]))])
                produce_avro(kafka_broker.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE, [
                    {"customer_id": customer_id, "score": 0.42, "model_version": "lr-test",
                     "behavioural_stage": "new", "scored_at": serde.to_millis(event["updated_at"])}])
                expect(page.locator("#actions .action.arrived .badge")).to_have_text("in the pipeline view",
                                                                                     timeout=30_000)
                expect(page.locator("#customer-body")).to_contain_text("Katherine Johnson")
                expect(page.locator("#customer-body")).to_contain_text("0.42", timeout=30_000)
                page.screenshot(path=str(shots["arrived"]), full_page=True)

                # back on the table: the new customer is the most recent, declared stage in the 4th column
                page.click("text=‹ all customers")
                page.fill("#q", "katherine johnson")
                page.click("button:has-text('Search')")
                row = page.locator(f'tr[data-customer="{customer_id}"]')
                expect(row).to_have_count(1)
                cells = row.locator("td")
                assert cells.nth(1).inner_text() == "Katherine Johnson"
                assert cells.nth(3).inner_text() == "evangelist"
                page.fill("#q", "")
                page.click("button:has-text('Search')")
                expect(rows).to_have_count(7)
                first = page.locator("table.customers tbody tr").first
                assert first.get_attribute("data-customer") == customer_id
                page.screenshot(path=str(shots["table"]), full_page=True)
                assert problems == [], problems  # no CSP violation, script error or failed request

                # Redis goes away: the open page says so by itself, then recovers by itself
                redis_server.stop()
                try:
                    expect(page.locator("#status .banner-down")).to_contain_text("Redis is down.", timeout=20_000)
                    expect(page.locator('[data-check="redis"]')).to_have_text("Redis down")
                    expect(page.locator("#customers")).to_contain_text("Customer data is unavailable")
                    page.screenshot(path=str(shots["redis-down"]), full_page=True)
                finally:
                    redis_server.restart()
                expect(page.locator("#status .banner-down")).to_have_count(0, timeout=60_000)
                expect(rows).to_have_count(7, timeout=60_000)  # the wiped cache rebuilt from the topics

                # forget the customer from its page: confirm by typing the id, then it leaves the table
                problems.clear()  # the outage's 503s were expected
                page.goto(f"{base}/customers/{customer_id}")
                page.click("a.danger-link")
                page.wait_for_url(f"{base}/customers/{customer_id}/forget")
                page.fill("#confirm", customer_id)
                page.screenshot(path=str(shots["forget"]), full_page=True)
                page.click("button.danger")
                page.wait_for_url(f"{base}/")
                expect(page.locator(".flash-sent")).to_contain_text(f"erasure of customer {customer_id} requested")
                expect(rows).to_have_count(6, timeout=30_000)
                expect(page.locator(f'tr[data-customer="{customer_id}"]')).to_have_count(0)
                assert [r["customer_id"] for r in proxy.decoded(topics.CUSTOMER_ERASURE.name)] == [customer_id]
                assert problems == [], problems
            finally:
                browser.close()
    for shot in shots.values():
        assert shot.is_file() and shot.stat().st_size > 10_000, shot



def _pipeline_data(bootstrap: str, registry_url: str, n: int = 60) -> list[str]:
    """n customers as the pipeline would describe them: seed profiles (names, emails, declared stages),
    consolidated rows, scores spread over [0, 1], segments, orders and engagements."""
    rng = random.Random(2026)
    t0 = 1_767_225_600_000
    profiles = [events.new_profile(rng, t0 + i * 60_000) for i in range(n)]
    ids = [p["customer_id"] for p in profiles]
    rows, scores, segments, orders, outcomes = [], [], [], [], []
    for i, p in enumerate(profiles):
        count = rng.choice([0, 0, 1, 2, 3, 5, 8])
        value = round(sum(rng.uniform(15, 180) for _ in range(count)), 2)
        delivered, failed = rng.randint(0, 6), rng.randint(0, 2)
        rows.append(consolidated(
            p["customer_id"], first_name=p["first_name"], last_name=p["last_name"], email=p["email"],
            lifecycle_stage=p["lifecycle_stage"], order_count=count, lifetime_value=value,
            last_order_at=t0 + i * 3_600_000 if count else None, activations_delivered=delivered,
            activations_failed=failed, activations_bounced=min(failed, 1), created_at=t0, profile_updated_at=t0))
        behavioural = "prospect" if count == 0 else rng.choice(["customer", "customer", "evangelist", "churn-risk"])
        for k in range(3):
            base = min(0.98, 0.08 * count + rng.uniform(0, 0.35))
            scores.append({"customer_id": p["customer_id"], "score": round(min(1.0, base + 0.03 * k), 3),
                           "model_version": "lr-20260101", "behavioural_stage": behavioural,
                           "scored_at": t0 + k * 86_400_000})
        segment = ("new_prospect" if count == 0 and p["lifecycle_stage"] == "prospect" else "at_risk"
                   if p["lifecycle_stage"] == "churn-risk" else "vip_evangelist" if value >= 1000 else "loyal"
                   if count >= 5 or value >= 500 else "nurture")
        segments.append({"customer_id": p["customer_id"], "segment": "nurture", "lifecycle_stage": None,
                         "lifetime_value": None, "order_count": None})
        if segment != "nurture":
            segments.append({**segments[-1], "segment": segment})
        for k in range(count):
            order = events.new_order(rng, p["customer_id"], t0 + k * 86_400_000)
            orders.append({"customer_id": p["customer_id"], "order_id": order["order_id"],
                           "order_total": order["order_total"], "currency": order["currency"],
                           "channel": order["channel"], "item_count": len(order["items"]),
                           "placed_at": t0 + k * 86_400_000, "first_name": p["first_name"],
                           "last_name": p["last_name"], "email": p["email"], "lifecycle_stage": p["lifecycle_stage"]})
        for k in range(delivered + failed):
            outcomes.append(events.new_activation(rng, p["customer_id"], t0 + k * 43_200_000,
                                                  status="delivered" if k < delivered else "failed"))
    produce_json(bootstrap, rows)
    produce_avro(bootstrap, registry_url, topics.PROPENSITY_SCORE, scores)
    produce_avro(bootstrap, registry_url, topics.SEGMENT_MATERIALIZED, segments)
    produce_json(bootstrap, orders, topic=topics.ORDER_ENRICHED.name)
    produce_avro(bootstrap, registry_url, topics.ACTIVATION_STATUS, outcomes)
    return ids


def test_the_insights_page_from_an_empty_pipeline_to_live_data_and_through_a_redis_outage(
        kafka_broker, redis_server, schema_registry):
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    ensure_topics(kafka_broker)
    url = db_url(redis_server)
    flush(url)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shots = {name: OUTPUT / f"webapp-insights-{name}.png" for name in ("empty", "live", "redis-down", "customer")}
    for shot in shots.values():
        shot.unlink(missing_ok=True)
    web = settings(url, kafka_broker.bootstrap, schema_registry.url, REFRESH_INTERVAL_MS="500")
    from webapp import create_app

    with running_feeder(web) as feeder, serving(create_app(web)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in (r.failure or "")
                and problems.append(f"request failed: {r.url}: {r.failure}"))
        try:
            # an empty pipeline: every panel says what is missing, nothing is invented
            wait_until(lambda: caught_up(feeder), 60, "the feeder on empty topics")
            page.goto(f"{base}/insights")
            expect(page.locator('[data-check="feeder"]')).to_have_text("feeder running", timeout=20_000)
            expect(page.locator("#segments")).to_contain_text("No customers in the cache yet")
            expect(page.locator("#scores")).to_contain_text("No scores yet")
            expect(page.locator("#top")).to_contain_text("No scored customers yet")
            expect(page.locator('[data-number="customers"]')).to_have_text("0")
            expect(page.locator("#spark-freshness-empty")).to_contain_text("Not available yet")
            # every topic the feeder reads + the dead letters
            assert page.locator("#pipeline tr[data-topic]").count() == len(FEED_TOPICS) + 1
            page.screenshot(path=str(shots["empty"]), full_page=True)

            # the pipeline delivers: the open page fills in by itself
            ids = _pipeline_data(kafka_broker.bootstrap, schema_registry.url)
            expect(page.locator('[data-number="customers"]')).to_have_text(str(len(ids)), timeout=60_000)
            wait_until(lambda: caught_up(feeder), 60, "the feeder caught up")
            page.wait_for_timeout(1500)  # one more refresh after the last batch
            api = page.request.get(f"{base}/api/insights").json()
            bars = page.locator("#segments g.bar")
            drawn = {bars.nth(i).get_attribute("data-label"): int(bars.nth(i).get_attribute("data-value"))
                     for i in range(bars.count())}
            assert drawn == {(s["segment"] or "no segment yet"): s["customers"] for s in api["segments"]}
            overall = page.locator("#scores svg.histogram:not(.small) g.bucket")
            assert [int(overall.nth(i).get_attribute("data-value")) for i in range(overall.count())] == api["scores"]
            assert sum(api["scores"]) == api["scored"] == len(ids)
            assert page.locator("#scores figure.multiple").count() == len(api["scores_by_segment"])
            top = page.locator("#top tbody tr")
            assert [top.nth(i).get_attribute("data-customer") for i in range(top.count())] == [
                t["customer_id"] for t in api["top"]]
            matrix = page.locator("table.matrix td[data-declared]")
            cells = {(matrix.nth(i).get_attribute("data-declared"), matrix.nth(i).get_attribute("data-behavioural")):
                     matrix.nth(i).inner_text() for i in range(matrix.count())}
            assert {k: int(v) for k, v in cells.items() if v != "·"} == {
                (s["declared"] or "", s["behavioural"] or ""): s["customers"] for s in api["stages"]}
            lag = page.locator('#pipeline tr[data-topic="dom.customer.consolidated.v1"] td[data-field="lag"]')
            expect(lag).to_have_text("0", timeout=20_000)
            records = page.locator('#pipeline tr[data-topic="dom.customer.consolidated.v1"] td[data-field="records"]')
            expect(records).to_have_text(str(len(ids)))
            page.screenshot(path=str(shots["live"]), full_page=True)

            # the customer page of the top customer: score history, segment changes, orders, engagements
            page.locator("#top tbody tr a").first.click()
            page.wait_for_url(f"{base}/customers/*")
            expect(page.locator("#score-history svg.sparkline circle.point")).to_have_count(3)
            expect(page.locator("#recent-orders tbody tr").first).to_be_visible()
            expect(page.locator("#segment-history li").first).to_be_visible()
            page.screenshot(path=str(shots["customer"]), full_page=True)
            assert problems == [], problems

            # Redis goes away: the open insights page says so by itself, then recovers by itself
            page.goto(f"{base}/insights")
            redis_server.stop()
            try:
                expect(page.locator("#status .banner-down")).to_contain_text("Redis is down.", timeout=20_000)
                expect(page.locator("#insights")).to_contain_text("Insights are unavailable", timeout=20_000)
                page.screenshot(path=str(shots["redis-down"]), full_page=True)
            finally:
                redis_server.restart()
            expect(page.locator("#status .banner-down")).to_have_count(0, timeout=60_000)
            expect(page.locator('[data-number="customers"]')).to_have_text(str(len(ids)), timeout=90_000)
        finally:
            browser.close()
    for shot in shots.values():
        assert shot.is_file() and shot.stat().st_size > 10_000, shot
