"""Forgetting a customer from the web UI, on the real broker and the real redis-server (the Schema
Registry is the TEST DOUBLE): the customer page links to a confirmation page; a wrong confirmation or a
missing CSRF token sends nothing; the right one publishes the erasure request (keyed by the customer)
and the redacted profile, empties this browser's sent-actions history of the customer, and once the
feeder has read the request the customer is gone from the table, the search, the API and every other
browser's history. Asking again sends nothing and does not fail; an unknown id is a 404 that says so; an
unreachable Kafka is one line and changes nothing."""

from __future__ import annotations

import re
import uuid

from schemas import serde, topics
from tests.engines.test_webapp_app import TopicReader, _csrf
from tests.engines.test_webapp_helpers import (
    caught_up,
    consolidated,
    end_offsets,
    new_id,
    produce_json,
    running,
    running_app,
    running_feeder,
    settings,
    wait_until,
)

ERASURE = topics.CUSTOMER_ERASURE.name


def person(tag: str) -> dict:
    mark = uuid.uuid4().hex[:8]
    return {"first_name": f"{tag.capitalize()}first{mark}", "last_name": f"Last{mark}",
            "email": f"{tag}.{mark}@forget.example", "phone": f"+3247{int(mark, 16) % 10**7:07d}"}


def reader(broker, registry_url: str, topic: topics.Topic) -> TopicReader:
    # on a broker just started, a topic's leaders may not be elected yet (NOT_LEADER_FOR_PARTITION)
    wait_until(lambda: end_offsets(broker.bootstrap, topic.name), 30, f"the leaders of {topic.name}")
    return TopicReader(broker.bootstrap, registry_url, topic)


def session_actions(client) -> list[dict]:
    with client.session_transaction() as sess:
        return list(sess.get("actions") or [])


def test_forget_a_customer_from_its_page(url, broker, schema_registry):
    web = settings(url, broker.bootstrap, schema_registry.url, PUBLISH_TRANSPORT="kafka")
    gone, kept = new_id("gone"), new_id("kept")
    gone_who, kept_who = person("gone"), person("kept")
    erasures = reader(broker, schema_registry.url, topics.CUSTOMER_ERASURE)
    profiles = reader(broker, schema_registry.url, topics.CUSTOMER_PROFILE)
    try:
        produce_json(broker.bootstrap, [consolidated(gone, **gone_who, order_count=1, lifetime_value=42.0),
                                        consolidated(kept, **kept_who)])
        with running(web) as (app, feeder):
            client, other = app.test_client(), app.test_client()  # two browsers
            wait_until(lambda: client.get(f"/api/customers/{gone}").status_code == 200
                       and client.get(f"/api/customers/{kept}").status_code == 200, 60, "both customers")
            # both browsers sent actions for the customer (one also for the other customer)
            for browser, ids in ((client, (gone, kept)), (other, (gone,))):
                token = _csrf(browser.get(f"/customers/{gone}").get_data(as_text=True))
                for customer in ids:
                    assert browser.post(f"/customers/{customer}/orders", data={"csrf_token": token}).status_code == 303
            assert {a["customer_id"] for a in session_actions(client)} == {gone, kept}

            # the customer page links to the confirmation page, which says what happens
            page = client.get(f"/customers/{gone}").get_data(as_text=True)
            link = re.search(r'<a class="danger-link" href="([^"]+)">Forget this customer…</a>', page)
            assert link and link.group(1) == f"/customers/{gone}/forget"
            confirm = client.get(link.group(1))
            assert confirm.status_code == 200
            text = confirm.get_data(as_text=True)
            for said in (ERASURE, "Delta tables", "Sent actions", "append-only", "retention", "docs/forget.md", f"{gone_who['first_name']} {gone_who['last_name']}"):
                assert said in text, said
            token = _csrf(text)
            before = end_offsets(broker.bootstrap, ERASURE)

            # refused: no CSRF token, a forged one, a wrong confirmation (with one clear message)
            assert client.post(link.group(1), data={"confirm": gone}).status_code == 400
            assert client.post(link.group(1), data={"csrf_token": "forged", "confirm": gone}).status_code == 400
            for typed in ("", kept, gone.upper()):
                wrong = client.post(link.group(1), data={"csrf_token": token, "confirm": typed})
                assert wrong.status_code == 400
                html = wrong.get_data(as_text=True)
                assert html.count('<div class="form-errors"') == 1
                assert f"Confirmation: type the customer id {gone} exactly. Nothing was sent." in html
            assert end_offsets(broker.bootstrap, ERASURE) == before, "a refused form published"
            assert client.get(f"/api/customers/{gone}").status_code == 200

            # confirmed: the request on its topic, keyed by the customer, then the redacted profile
            done = client.post(link.group(1), data={"csrf_token": token, "confirm": f" {gone} "})
            assert done.status_code == 303 and done.headers["Location"] == "/"
            # this browser's history lost the customer at once (the other customer's action stays), before
            # any page is shown (a shown page also drops the actions of customers the feeder has erased)
            assert [a["customer_id"] for a in session_actions(client)] == [kept]
            key, record = erasures.find(lambda r: r["customer_id"] == gone)
            assert key == gone and record["requested_by"] == "webapp"
            uuid.UUID(record["request_id"])
            assert sum(end_offsets(broker.bootstrap, ERASURE).values()) == sum(before.values()) + 1
            key, profile = profiles.find(lambda r: r["customer_id"] == gone and r["email"] == "")
            assert key == gone and (profile["first_name"], profile["last_name"], profile["phone"]) == ("", "", None)
            assert serde.to_millis(profile["updated_at"]) == serde.to_millis(record["requested_at"])
            index = client.get("/").get_data(as_text=True)
            assert f"erasure of customer {gone} requested (request {record['request_id']})" in index

            # the feeder reads the request: gone from the API, the table, the search and the page
            wait_until(lambda: client.get(f"/api/customers/{gone}").status_code == 404 and caught_up(feeder), 60,
                       "the feeder's erasure")
            assert client.get("/api/customers", query_string={"q": gone_who["first_name"].lower()}) \
                .get_json()["total"] == 0
            assert client.get("/api/customers", query_string={"q": gone_who["email"]}).get_json()["total"] == 0
            index = client.get("/", query_string={"per_page": 200}).get_data(as_text=True)
            assert gone not in index and gone_who["email"] not in index and kept in index
            detail = client.get(f"/customers/{gone}")
            assert detail.status_code == 404
            text = detail.get_data(as_text=True)
            assert "This customer was forgotten: erasure requested" in text
            assert gone_who["email"] not in text and "Send order" not in text and "danger-link" not in text
            fragment = client.get(f"/fragments/customer/{gone}").get_data(as_text=True)
            assert "This customer was forgotten" in fragment  # an open customer page says so by itself
            # the other browser: its action for the forgotten customer is dropped the next time it shows it
            assert {a["customer_id"] for a in session_actions(other)} == {gone}
            assert gone not in other.get("/fragments/actions").get_data(as_text=True)
            assert session_actions(other) == []
            assert client.get(f"/api/customers/{kept}").status_code == 200

            # asked again: the page says when it was forgotten, a second confirmation sends nothing, no error
            again = client.get(link.group(1))
            assert again.status_code == 200
            assert "This customer was already forgotten: erasure requested" in again.get_data(as_text=True)
            after = end_offsets(broker.bootstrap, ERASURE)
            second = client.post(link.group(1), data={"csrf_token": token, "confirm": gone})
            assert second.status_code == 200 and "already forgotten" in second.get_data(as_text=True)
            assert end_offsets(broker.bootstrap, ERASURE) == after

            # an id the cache does not know: 404 with the reason, no form
            nobody = new_id("nobody")
            unknown = client.get(f"/customers/{nobody}/forget")
            assert unknown.status_code == 404
            assert f"No customer {nobody} in the web UI's cache" in unknown.get_data(as_text=True)
            assert 'name="confirm"' not in unknown.get_data(as_text=True)
            assert client.post(f"/customers/{nobody}/forget",
                               data={"csrf_token": token, "confirm": nobody}).status_code == 404
            assert end_offsets(broker.bootstrap, ERASURE) == after
    finally:
        erasures.close()
        profiles.close()


def test_an_unreachable_kafka_is_one_line_and_forgets_nothing(url, broker, schema_registry):
    """The feeder reads the real broker; the app publishes to a closed port."""
    feeding = settings(url, broker.bootstrap, schema_registry.url)
    web = settings(url, "127.0.0.1:9", schema_registry.url, PUBLISH_MAX_RETRIES="0", PUBLISH_TIMEOUT_S="1")
    customer = new_id("stays")
    produce_json(broker.bootstrap, [consolidated(customer, **person("stays"))])
    with running_feeder(feeding) as feeder, running_app(web) as app:
        client = app.test_client()
        wait_until(lambda: client.get(f"/api/customers/{customer}").status_code == 200 and caught_up(feeder), 60,
                   "the customer")
        with client.session_transaction() as sess:  # a sent action, as the order form leaves it
            sess["actions"] = [{"id": "a1", "kind": "order", "customer_id": customer, "summary": "order 1.00 EUR",
                                "sent_ms": 1, "before": 0}]
        token = _csrf(client.get(f"/customers/{customer}/forget").get_data(as_text=True))
        failed = client.post(f"/customers/{customer}/forget", data={"csrf_token": token, "confirm": customer})
        assert failed.status_code == 503
        text = failed.get_data(as_text=True)
        assert f"Not sent: publish to {ERASURE} via Kafka 127.0.0.1:9" in text and text.count("Not sent:") == 1
        assert 'name="confirm"' in text  # the form is still there to try again
        assert [a["customer_id"] for a in session_actions(client)] == [customer]
        assert client.get(f"/api/customers/{customer}").status_code == 200
