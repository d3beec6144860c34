"""The pages, forms and API over the real cache, publishing through the seed's publisher to the real
broker (Kafka transport) and through the HTTP-proxy test double (REST transport, the cluster default)."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections import Counter

from confluent_kafka import Consumer, TopicPartition

from schemas import serde, topics
from seed.events import LIFECYCLE_STAGES
from tests.engines.test_webapp_helpers import (
    caught_up,
    consolidated,
    enriched_order,
    new_id,
    produce_avro,
    produce_json,
    running,
    running_app,
    score,
    segment,
    settings,
    wait_until,
)
from tests.support.http_proxy_double import HttpProxyDouble


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


class TopicReader:
    """Reads what the app published, from the end of the topic as it was when created."""

    def __init__(self, bootstrap: str, registry_url: str, topic: topics.Topic):
        self.topic = topic
        self.codec = serde.TopicSerde(serde.registry_client(registry_url), topic)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False})
        partitions = self.consumer.list_topics(topic.name, timeout=10).topics[topic.name].partitions
        self.consumer.assign([
            TopicPartition(topic.name, p, self.consumer.get_watermark_offsets(TopicPartition(topic.name, p), 10)[1])
            for p in partitions])

    def find(self, predicate, timeout: float = 30.0) -> tuple[str, dict]:
        def poll():
            msg = self.consumer.poll(0.5)
            if msg is None or msg.error():
                return None
            record = self.codec.deserialize(msg.value())
            return (msg.key().decode(), record) if predicate(record) else None

        return wait_until(poll, timeout, f"a matching record on {self.topic.name}", interval=0)

    def close(self) -> None:
        self.consumer.close()


def test_the_table_has_the_issue_columns_with_the_declared_stage_fourth(url):
    with running_app(settings(url)) as app:
        client = app.test_client()
        html = client.get("/").get_data(as_text=True)
        headers = re.findall(r'<th scope="col"[^>]*data-column="([^"]+)"[^>]*>\s*<a[^>]*>([^<]+)', html)
        assert [key for key, _ in headers] == [
            "customer_id", "name", "email", "lifecycle_stage", "behavioural_stage", "order_count",
            "lifetime_value", "activations_delivered", "activations_failed", "segment", "score",
            "last_activity"]
        assert headers[3][1].strip() == "Declared stage"
        assert "No customers in the cache yet" in html


def test_sorting_searching_paging_and_the_detail_view(url, broker, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url, PAGE_SIZE="5")
    ids = [new_id("page") for _ in range(12)]
    rows = [consolidated(cid, first_name=f"Pat{i:02d}", last_name="Pager", email=f"pat{i:02d}@paging.test",
                         lifecycle_stage=LIFECYCLE_STAGES[i % 4], order_count=i, lifetime_value=10.0 * i,
                         profile_updated_at=1_767_225_600_000 + i)
            for i, cid in enumerate(ids)]
    with running(web) as (app, _):
        client = app.test_client()
        produce_json(broker.bootstrap, rows)
        wait_until(lambda: client.get("/api/customers", query_string={"q": "pat", "per_page": 50})
                   .get_json()["total"] == 12, 60, "the customers")
        api = client.get("/api/customers", query_string={"q": "pat", "sort": "order_count", "dir": "desc",
                                                         "page": 2, "per_page": 5}).get_json()
        assert [r["order_count"] for r in api["items"]] == [6, 5, 4, 3, 2]
        assert (api["total"], api["pages"], api["page"]) == (12, 3, 2)
        html = client.get("/", query_string={"q": "pat", "sort": "lifetime_value", "dir": "asc"}).get_data(as_text=True)
        assert html.count('<tr data-customer="') == 5  # PAGE_SIZE
        assert re.findall(r"<td class=\"name\"[^>]*>(Pat\d\d Pager)</td>", html) == [f"Pat{i:02d} Pager" for i in range(5)]
        assert "page 1 of 3" in html and 'rel="next"' in html
        assert 'aria-sort="ascending"' in html
        # detail view and its JSON
        detail = client.get(f"/customers/{ids[7]}")
        assert detail.status_code == 200
        text = detail.get_data(as_text=True)
        assert "Pat07 Pager" in text and "pat07@paging.test" in text and "70.00" in text
        one = client.get(f"/api/customers/{ids[7]}").get_json()
        assert one["lifecycle_stage"] == LIFECYCLE_STAGES[3]
        # the list and the detail carry the same fields with the same values (none left null in the list)
        listed = client.get("/api/customers", query_string={"q": "pat07"}).get_json()["items"]
        assert listed == [one] and one["created_at"] and one["is_active"] is True and "phone" in one
        assert client.get(f"/customers/{new_id('nobody')}").status_code == 404
        # invalid parameters: the API says which and why, the page falls back and says so
        bad = client.get("/api/customers", query_string={"sort": "password", "page": "x", "per_page": 1000})
        assert bad.status_code == 400
        assert len(bad.get_json()["reasons"]) == 3
        page = client.get("/", query_string={"sort": "password"})
        assert page.status_code == 200 and "Some parameters were ignored" in page.get_data(as_text=True)


def test_actions_publish_through_kafka_and_show_sent_until_the_pipeline_view_arrives(url, broker, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url, PUBLISH_TRANSPORT="kafka")
    profiles = TopicReader(broker.bootstrap, schema_registry.url, topics.CUSTOMER_PROFILE)
    orders = TopicReader(broker.bootstrap, schema_registry.url, topics.ORDER_PLACED)
    activations = TopicReader(broker.bootstrap, schema_registry.url, topics.ACTIVATION_STATUS)
    try:
        with running(web) as (app, _):
            client = app.test_client()
            token = _csrf(client.get("/").get_data(as_text=True))
            created = client.post("/customers", data={"csrf_token": token, "first_name": "Hedy", "last_name": "Lamarr",
                                                      "email": "", "lifecycle_stage": "churn-risk"})
            assert created.status_code == 303
            customer_id = created.headers["Location"].rsplit("/", 1)[1]
            key, record = profiles.find(lambda r: r["first_name"] == "Hedy" and r["last_name"] == "Lamarr")
            assert key == customer_id == record["customer_id"]
            assert record["lifecycle_stage"] == "churn-risk" and record["email"].endswith("@example.com")
            uuid.UUID(customer_id)  # seed ids: uuid4 form, never a colliding short number
            # sent, not in the cache: no optimistic write
            page = client.get(created.headers["Location"])
            text = page.get_data(as_text=True)
            assert page.status_code == 200 and "Not in the consolidated view yet" in text
            assert "sent · waiting for the pipeline" in text
            assert client.get(f"/api/customers/{customer_id}").status_code == 404
            # an order and an engagement for it
            token = _csrf(text)
            response = client.post(f"/customers/{customer_id}/orders",
                                   data={"csrf_token": token, "sku": "SKU-0042", "quantity": "3", "price": "19.99"})
            assert response.status_code == 303
            _, order = orders.find(lambda r: r["customer_id"] == customer_id)
            assert order["items"] == [{"sku": "SKU-0042", "quantity": 3, "price": 19.99}]
            assert order["order_total"] == 59.97
            response = client.post(f"/customers/{customer_id}/engagements",
                                   data={"csrf_token": token, "channel": "sms", "status": "failed"})
            assert response.status_code == 303
            _, activation = activations.find(lambda r: r["customer_id"] == customer_id)
            assert (activation["channel"], activation["status"]) == ("sms", "failed")
            actions = client.get(f"/fragments/actions?customer={customer_id}").get_data(as_text=True)
            assert actions.count("sent · waiting for the pipeline") == 3
            # the pipeline's view arrives (what ksqlDB would write): profile only, then with the order
            produce_json(broker.bootstrap, [consolidated(customer_id, first_name="Hedy", last_name="Lamarr",
                                                         lifecycle_stage="churn-risk")])
            wait_until(lambda: client.get(f"/api/customers/{customer_id}").status_code == 200, 60, "the view")
            actions = client.get(f"/fragments/actions?customer={customer_id}").get_data(as_text=True)
            assert actions.count("in the pipeline view") == 1  # the creation; order and engagement still pending
            produce_json(broker.bootstrap, [consolidated(customer_id, first_name="Hedy", last_name="Lamarr",
                                                         lifecycle_stage="churn-risk", order_count=1,
                                                         lifetime_value=59.97, activations_failed=1)])
            wait_until(lambda: client.get(f"/api/customers/{customer_id}").get_json()["order_count"] == 1, 60,
                       "the updated view")
            actions = client.get(f"/fragments/actions?customer={customer_id}").get_data(as_text=True)
            assert actions.count("in the pipeline view") == 3 and "waiting" not in actions
            assert "59.97 lifetime value" in actions
    finally:
        for reader in (profiles, orders, activations):
            reader.close()


def test_a_random_customer_goes_through_the_http_proxy_with_registry_lookups(url, broker, schema_registry):
    with HttpProxyDouble(schema_registry, forward_bootstrap=broker.bootstrap) as proxy:
        web = settings(url, broker.bootstrap, schema_registry.url, PUBLISH_TRANSPORT="rest",
                       REST_PROXY_URL=proxy.url)
        reader = TopicReader(broker.bootstrap, schema_registry.url, topics.CUSTOMER_PROFILE)
        try:
            with running_app(web) as app:
                client = app.test_client()
                token = _csrf(client.get("/").get_data(as_text=True))
                response = client.post("/customers", data={"csrf_token": token, "lifecycle_stage": "random"})
                assert response.status_code == 303
                customer_id = response.headers["Location"].rsplit("/", 1)[1]
                decoded = proxy.decoded(topics.CUSTOMER_PROFILE.name)
                assert [r["customer_id"] for r in decoded] == [customer_id]
                assert decoded[0]["lifecycle_stage"] in LIFECYCLE_STAGES  # drawn at random
                key, record = reader.find(lambda r: r["customer_id"] == customer_id)
                assert key == customer_id and record["first_name"]
                assert any(path.startswith(f"/subjects/{topics.CUSTOMER_PROFILE.subject}")
                           for _, path in schema_registry.requests)
        finally:
            reader.close()


def test_forms_validate_input_with_clear_messages_and_require_csrf(url, broker, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    with running_app(web) as app:
        client = app.test_client()
        html = client.get("/").get_data(as_text=True)
        token = _csrf(html)
        no_token = client.post("/customers", data={"first_name": "Eve"})
        assert no_token.status_code == 400 and "reload the page" in no_token.get_data(as_text=True)
        forged = client.post("/customers", data={"csrf_token": "forged", "first_name": "Eve"})
        assert forged.status_code == 400
        bad = client.post("/customers", data={"csrf_token": token, "first_name": "R2D2", "last_name": "x" * 60,
                                              "email": "not-an-email", "lifecycle_stage": "vip"})
        assert bad.status_code == 400
        text = bad.get_data(as_text=True)
        for message in ("First name: letters only", "Last name: at most 50 characters",
                        "Email: enter an address like name@example.com", "Not a valid choice"):
            assert message in text, message
        assert 'value="R2D2"' in text  # the user's input is kept
        customer = new_id("form")
        order = client.post(f"/customers/{customer}/orders", data={"csrf_token": token, "sku": "SKU-1"})
        assert order.status_code == 400
        assert "give SKU, quantity and unit price together" in order.get_data(as_text=True)
        order = client.post(f"/customers/{customer}/orders",
                            data={"csrf_token": token, "sku": "SKU-1", "quantity": "0", "price": "-1"})
        text = order.get_data(as_text=True)
        assert "Quantity: a whole number from 1 to 99" in text and "Unit price: a number from 0 to 100000" in text
        engagement = client.post(f"/customers/{customer}/engagements",
                                 data={"csrf_token": token, "channel": "fax", "status": "delivered"})
        assert engagement.status_code == 400
        assert client.post("/customers/bad%20id/orders", data={"csrf_token": token}).status_code == 404


def test_a_failed_publish_says_so_and_records_nothing(url):
    web = settings(url, "127.0.0.1:9", "mock://webapp-fail",
                   PUBLISH_MAX_RETRIES="0", PUBLISH_TIMEOUT_S="1")
    with running_app(web) as app:
        client = app.test_client()
        token = _csrf(client.get("/").get_data(as_text=True))
        response = client.post("/customers", data={"csrf_token": token, "first_name": "Lost"})
        assert response.status_code == 503
        text = response.get_data(as_text=True)
        assert "Not sent: publish to dom.customer.profile.upsert.v1 via Kafka 127.0.0.1:9" in text and "failed" in text
        assert "Nothing sent from this browser yet." in client.get("/").get_data(as_text=True)


def test_responses_carry_security_headers_and_pages_use_no_inline_script(url):
    with running_app(settings(url)) as app:
        client = app.test_client()
        for path in ("/", "/api/customers", "/healthz", "/fragments/customers", "/static/app.js", "/insights",
                     "/customers/c-1", "/api/insights"):
            response = client.get(path)
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["X-Frame-Options"] == "DENY"
        for path in ("/", "/insights", "/customers/c-1"):
            html = client.get(path).get_data(as_text=True)
            assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
            assert not re.search(r"\son[a-z]+=", html) and "style=" not in html
            assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from a CDN
        cookie = client.get_cookie("me_session")
        assert cookie is None or cookie.http_only


def _all_customers(client) -> list[dict]:
    items, page = [], 1
    while True:
        body = client.get("/api/customers", query_string={"per_page": 200, "page": page, "sort": "customer_id",
                                                          "dir": "asc"}).get_json()
        items += body["items"]
        if page >= body["pages"]:
            return items
        page += 1


def test_every_number_on_the_insights_page_is_the_json_apis_and_the_lists(url, broker, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    rng = random.Random(5)
    ids = [new_id("ins") for _ in range(40)]
    produce_json(broker.bootstrap, [consolidated(c, lifecycle_stage=LIFECYCLE_STAGES[i % 4], order_count=i % 6)
                                    for i, c in enumerate(ids)])
    produce_avro(broker.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE,
                 [score(c, round(rng.random(), 3), behavioural_stage=LIFECYCLE_STAGES[(i * 3) % 4])
                  for i, c in enumerate(ids) if i % 5])
    produce_avro(broker.bootstrap, schema_registry.url, topics.SEGMENT_MATERIALIZED,
                 [segment(c, ("loyal", "nurture", "at_risk")[i % 3]) for i, c in enumerate(ids) if i % 4])
    with running(web) as (app, feeder):
        client = app.test_client()
        wait_until(lambda: caught_up(feeder) and client.get(f"/api/customers/{ids[-1]}").status_code == 200, 90,
                   "the customers")
        api = client.get("/api/insights").get_json()
        everyone = _all_customers(client)
        assert api["customers"] == len(everyone)
        assert {s["segment"]: s["customers"] for s in api["segments"]} == dict(
            Counter(c["segment"] for c in everyone))
        assert {(s["declared"], s["behavioural"]): s["customers"] for s in api["stages"]} == dict(
            Counter((c["lifecycle_stage"], c["behavioural_stage"]) for c in everyone))
        scored = [c for c in everyone if c["score"] is not None]
        assert api["scored"] == len(scored)
        assert api["scores"] == [sum(1 for c in scored if min(9, int(c["score"] * 10)) == b) for b in range(10)]
        assert [t["customer_id"] for t in api["top"]] == [c["customer_id"] for c in sorted(
            scored, key=lambda c: (c["score"], c["customer_id"]), reverse=True)[:10]]
        # the page draws exactly those numbers
        html = client.get("/insights").get_data(as_text=True)
        bars = dict(re.findall(r'<g class="bar" data-label="([^"]*)" data-value="(\d+)"', html))
        assert {k: int(v) for k, v in bars.items()} == {
            (s["segment"] or "no segment yet"): s["customers"] for s in api["segments"]}
        overall = html.split('id="scores"', 1)[1].split("<h3>", 1)[0]
        assert [int(v) for v in re.findall(r'<g class="bucket" data-label="[^"]*" data-value="(\d+)"', overall)] \
            == api["scores"]
        cells = re.findall(r'data-declared="([^"]*)" data-behavioural="([^"]*)">([^<]+)<', html)
        drawn = {(d or None, b or None): int(n.replace(",", "")) for d, b, n in cells if n != "·"}
        assert drawn == {(s["declared"], s["behavioural"]): s["customers"] for s in api["stages"]}
        assert re.search(rf'data-number="customers">{api["customers"]:,}<', html)
        # the Spark layers: exactly what the feeder read from the jobs' status topic, else labelled empty
        layers = api["feeder"]["layers"]
        assert set(re.findall(r'<tr data-layer="[^"]*" data-query="([^"]+)"', html)) == set(layers)
        assert ('id="spark-freshness-empty"' in html) == (not layers)
        assert html.count("not published yet") == len({"bronze", "silver", "gold", "score"}
                                                      - {q["job"] for q in layers.values()})


def test_the_spark_layers_freshness_comes_from_the_jobs_status_topic(url, broker, schema_registry, tmp_path):
    from spark import status as spark_status
    from spark.status import Measured
    from tests.support import pipeline

    web = settings(url, broker.bootstrap, schema_registry.url)
    jobs = pipeline.job_settings(broker.bootstrap, schema_registry.url, str(tmp_path), "")  # the product's topic
    now = int(time.time()) * 1000 - 60_000  # the broker refuses record times far from its clock
    run = uuid.uuid4().hex[:6]  # queries of this test only (the session broker's topic is shared)
    bronze_q, silver_q = f"bronze-{run}", f"silver_orders-{run}"
    published = [
        spark_status.StatusPublisher(jobs, "bronze", clock=lambda: now / 1000).publish(bronze_q, 6, Measured(40, now - 9000)),
        # the same query again: the newest batch replaces the older one
        spark_status.StatusPublisher(jobs, "bronze", clock=lambda: (now + 5000) / 1000).publish(
            bronze_q, 7, Measured(3, now + 1200)),
        spark_status.StatusPublisher(jobs, "silver", clock=lambda: (now + 2000) / 1000).publish(
            silver_q, 2, Measured(1, None)),
    ]
    assert published == [True, True, True]
    with running(web) as (app, _):
        client = app.test_client()
        layers = wait_until(lambda: (found := client.get("/api/insights").get_json()["feeder"]["layers"])
                            and {bronze_q, silver_q} <= set(found) and found[bronze_q]["batch_id"] == 7 and found,
                            60, "the Spark layers in the feeder's status")
        assert layers[bronze_q] == {"job": "bronze", "query": bronze_q, "batch_id": 7, "rows": 3,
                                    "newest_event_ms": now + 1200, "committed_ms": now + 5000, "lag_ms": 3800}
        assert layers[silver_q] == {"job": "silver", "query": silver_q, "batch_id": 2, "rows": 1,
                                    "newest_event_ms": None, "committed_ms": now + 2000, "lag_ms": None}
        html = client.get("/insights").get_data(as_text=True)
        row = html.split(f'data-query="{bronze_q}"', 1)[1].split("</tr>", 1)[0]
        assert f'data-field="committed" data-ms="{now + 5000}"' in row
        assert f'data-field="newest_event" data-ms="{now + 1200}"' in row
        assert 'data-field="lag" data-ms="3800">3.8 s<' in row
        assert re.search(r'data-field="batch">7<', row) and re.search(r'data-field="rows">3<', row)
        assert 'id="spark-freshness-empty"' not in html


def test_the_customer_page_shows_score_history_segment_changes_orders_and_engagements(url, broker, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url)
    who = new_id("hist")
    t0 = 1_767_225_600_000
    produce_json(broker.bootstrap, [consolidated(who, first_name="Mary", last_name="Jackson", order_count=2)])
    produce_avro(broker.bootstrap, schema_registry.url, topics.PROPENSITY_SCORE,
                 [score(who, 0.25, t0), score(who, 0.5, t0 + 86_400_000), score(who, 0.875, t0 + 2 * 86_400_000)])
    produce_avro(broker.bootstrap, schema_registry.url, topics.SEGMENT_MATERIALIZED,
                 [segment(who, "new_prospect"), segment(who, "nurture"), segment(who, "loyal")])
    produce_json(broker.bootstrap, [enriched_order(who, "order-aaaa-1", 12.5, t0), enriched_order(who, "order-bbbb-2",
                                                                                                  99.0, t0 + 5000)],
                 topic=topics.ORDER_ENRICHED.name)
    produce_avro(broker.bootstrap, schema_registry.url, topics.ACTIVATION_STATUS, [
        {"activation_id": "act-x", "customer_id": who, "order_id": None, "channel": "push", "status": "bounced",
         "delivered_at": t0 + 7000, "attempts": 2}])
    with running(web) as (app, feeder):
        client = app.test_client()
        wait_until(lambda: len(client.get(f"/api/customers/{who}/history").get_json()["recent_engagements"]) == 1
                   and len(client.get(f"/api/customers/{who}/history").get_json()["score_history"]) == 3, 90,
                   "the history")
        html = client.get(f"/customers/{who}").get_data(as_text=True)
        history = html.split('class="history"', 1)[1]
        scores = history.split('id="segment-history"', 1)[0]
        assert [float(v) for v in re.findall(r'class="point"[^>]*data-value="([\d.]+)"', scores)] == [0.25, 0.5, 0.875]
        table = scores.split("<table", 1)[1]
        assert re.findall(r'<td class="num">([\d.]+)</td>', table) == ["0.88", "0.50", "0.25"], "newest first"
        segments = history.split('id="segment-history"', 1)[1].split('id="recent-orders"', 1)[0]
        assert re.findall(r'<span class="tag">([^<]+)</span>', segments) == ["loyal", "nurture", "new_prospect"]
        assert "from nurture" in segments and "first segment" in segments
        orders = history.split('id="recent-orders"', 1)[1].split('id="recent-engagements"', 1)[0]
        assert re.findall(r'data-order="([^"]+)"', orders) == ["order-bbbb-2", "order-aaaa-1"]
        assert "99.00 EUR" in orders
        engagements = history.split('id="recent-engagements"', 1)[1]
        assert 'data-activation="act-x"' in engagements and "outcome-bounced" in engagements
        # a customer with no history says so instead of an empty table
        quiet = new_id("quiet")
        produce_json(broker.bootstrap, [consolidated(quiet)])
        wait_until(lambda: client.get(f"/api/customers/{quiet}").status_code == 200, 60, "the quiet customer")
        assert "No score yet" in client.get(f"/customers/{quiet}").get_data(as_text=True)
