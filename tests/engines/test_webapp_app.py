"""The pages, forms and API over the real cache, publishing through the seed's publisher to the real
broker (Kafka transport) and through the HTTP-proxy test double (REST transport, the cluster default)."""

from __future__ import annotations

import re
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas import serde, topics
from seed.events import LIFECYCLE_STAGES
from tests.engines.test_webapp_helpers import (
    consolidated,
    db_url,
    ensure_topics,
    flush,
    new_id,
    produce_json,
    running_app,
    settings,
    wait_until,
)
from tests.support.http_proxy_double import HttpProxyDouble


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
    with running_app(settings(url, CACHE_CONSUMER_ENABLED="false")) as app:
        client = app.test_client()
        html = client.get("/").get_data(as_text=True)
        headers = re.findall(r'<th scope="col"[^>]*data-column="([^"]+)"[^>]*>\s*<a[^>]*>([^<]+)', html)
        assert [key for key, _ in headers] == [
            "customer_id", "name", "email", "lifecycle_stage", "behavioural_stage", "order_count",
            "lifetime_value", "engagement_delivered", "engagement_failed", "segment", "propensity_score",
            "last_activity"]
        assert headers[3][1].strip() == "Declared stage"
        assert "No customers in the cache yet" in html


def test_sorting_searching_paging_and_the_detail_view(url, broker, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url, PAGE_SIZE="5")
    ids = [new_id("page") for _ in range(12)]
    rows = [consolidated(cid, first_name=f"Pat{i:02d}", last_name="Pager", email=f"pat{i:02d}@paging.test",
                         lifecycle_stage=LIFECYCLE_STAGES[i % 4], order_count=i, lifetime_value=10.0 * i,
                         updated_at=1_767_225_600_000 + i)
            for i, cid in enumerate(ids)]
    with running_app(web) as app:
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
        assert client.get(f"/api/customers/{ids[7]}").get_json()["lifecycle_stage"] == LIFECYCLE_STAGES[3]
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
        with running_app(web) as app:
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
                                                         lifetime_value=59.97, failed_count=1)])
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
                       REST_PROXY_URL=proxy.url, CACHE_CONSUMER_ENABLED="false")
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
    web = settings(url, broker.bootstrap, schema_registry.url, CACHE_CONSUMER_ENABLED="false")
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
    web = settings(url, "127.0.0.1:9", "mock://webapp-fail", CACHE_CONSUMER_ENABLED="false",
                   PUBLISH_MAX_RETRIES="0", PUBLISH_TIMEOUT_S="1")
    with running_app(web) as app:
        client = app.test_client()
        token = _csrf(client.get("/").get_data(as_text=True))
        response = client.post("/customers", data={"csrf_token": token, "first_name": "Lost"})
        assert response.status_code == 503
        text = response.get_data(as_text=True)
        assert "Not sent: publish to dom.customer.profile.upsert.v1 via Kafka 127.0.0.1:9 failed" in text
        assert app.extensions["marketing_engine"].cache.actions() == []


def test_responses_carry_security_headers_and_pages_use_no_inline_script(url):
    with running_app(settings(url, CACHE_CONSUMER_ENABLED="false")) as app:
        client = app.test_client()
        for path in ("/", "/api/customers", "/healthz", "/fragments/customers", "/static/app.js"):
            response = client.get(path)
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["X-Frame-Options"] == "DENY"
        html = client.get("/").get_data(as_text=True)
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
        assert not re.search(r"\son[a-z]+=", html) and "style=" not in html
        assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from a CDN
        cookie = client.get_cookie("me_session")
        assert cookie is None or cookie.http_only
