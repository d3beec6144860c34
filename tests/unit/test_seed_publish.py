from __future__ import annotations

import base64
import json
import random

import pytest
import requests

from schemas import serde, topics
from seed import events
from seed.publish import (
    BINARY_V2,
    KafkaPublisher,
    PublishError,
    RestPublisher,
    backoff_delay,
    make_publisher,
)
from seed.settings import PublisherSettings

NOW = 1_767_225_600_000


def _response(status: int, body) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode()
    r.headers["Content-Type"] = "application/vnd.kafka.v2+json"
    return r


def ok_reply(n: int, errors: dict[int, int] | None = None) -> dict:
    errors = errors or {}
    return {"offsets": [{"partition": 0, "offset": -1, "error_code": errors[i]} if i in errors
                        else {"partition": 0, "offset": i} for i in range(n)]}


class FakeSession:
    """Answers each POST with the next scripted reply: an int status, a dict body (200), an exception,
    or a callable(records) -> Response."""

    def __init__(self, script):
        self.script = list(script)
        self.calls: list[dict] = []

    def post(self, url, data, headers, timeout):
        body = json.loads(data)
        self.calls.append({"url": url, "records": body["records"], "headers": headers, "timeout": timeout})
        step = self.script.pop(0) if self.script else None
        if step is None:
            return _response(200, ok_reply(len(body["records"])))
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            return step(body["records"])
        if isinstance(step, int):
            return _response(step, {"error_code": step * 100, "message": "scripted"})
        return _response(200, step)

    def close(self):
        pass


@pytest.fixture
def settings(mock_registry_url):
    return PublisherSettings(rest_proxy_url="http://proxy.test:8082", schema_registry_url=mock_registry_url,
                             max_retries=2, batch_size=3, request_timeout_s=1.5)


def _records(n: int, seed: int = 1):
    rng = random.Random(seed)
    profiles = [events.new_profile(rng, NOW + i) for i in range(n)]
    return [(p["customer_id"], p) for p in profiles]


def _publisher(settings, script, sleeps=None):
    session = FakeSession(script)
    sleeps = [] if sleeps is None else sleeps
    return RestPublisher(settings, session=session, sleep=sleeps.append), session


def test_posts_binary_batches_of_framed_avro(settings):
    pub, session = _publisher(settings, [])
    recs = _records(7)
    assert pub.publish(topics.CUSTOMER_PROFILE, recs) == 7
    assert [len(c["records"]) for c in session.calls] == [3, 3, 1]
    call = session.calls[0]
    assert call["url"] == "http://proxy.test:8082/topics/dom.customer.profile.upsert.v1"
    assert call["headers"]["Content-Type"] == BINARY_V2 == "application/vnd.kafka.binary.v2+json"
    assert call["timeout"] == (1.5, 1.5)
    decoder = serde.TopicSerde(pub._serializers._client, topics.CUSTOMER_PROFILE)  # mock:// is per client
    sent = [r for c in session.calls for r in c["records"]]
    for (key, value), wire in zip(recs, sent, strict=True):
        assert base64.b64decode(wire["key"]).decode() == key
        raw = base64.b64decode(wire["value"])
        assert serde.parse_frame(raw)[0] >= 1
        decoded = decoder.deserialize(raw)
        assert decoded["customer_id"] == key and serde.to_millis(decoded["updated_at"]) == value["updated_at"]
    assert pub.stats.acknowledged == 7 and pub.stats.retries == 0


def test_empty_publish_sends_nothing(settings):
    pub, session = _publisher(settings, [])
    assert pub.publish(topics.ORDER_PLACED, []) == 0 and session.calls == []


def test_server_error_then_success_is_retried_with_backoff(settings):
    sleeps: list[float] = []
    pub, session = _publisher(settings, [500, 503], sleeps)
    assert pub.publish(topics.CUSTOMER_PROFILE, _records(2)) == 2
    assert len(session.calls) == 3 and len(sleeps) == 2 and pub.stats.retries == 2
    assert 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4


def test_connection_errors_and_timeouts_are_transient(settings):
    pub, session = _publisher(settings, [requests.ConnectionError("reset"), requests.ReadTimeout("slow")])
    assert pub.publish(topics.CUSTOMER_PROFILE, _records(1)) == 1
    assert len(session.calls) == 3


def test_retries_are_bounded_and_the_error_is_one_line(settings):
    pub, session = _publisher(settings, [requests.ConnectTimeout("x")] * 5)
    with pytest.raises(PublishError) as err:
        pub.publish(topics.CUSTOMER_PROFILE, _records(2))
    msg = str(err.value)
    assert "\n" not in msg
    assert "http://proxy.test:8082" in msg and "dom.customer.profile.upsert.v1" in msg
    assert "gave up after 2 retries" in msg
    assert len(session.calls) == 3 and err.value.acknowledged == 0
    assert pub.stats.failed == 2


def test_only_records_with_retriable_error_codes_are_resent(settings):
    pub, session = _publisher(settings, [ok_reply(3, {1: 6})])  # NOT_LEADER on record 1
    recs = _records(3)
    assert pub.publish(topics.CUSTOMER_PROFILE, recs) == 3
    assert [len(c["records"]) for c in session.calls] == [3, 1]
    assert session.calls[1]["records"][0] == session.calls[0]["records"][1]


def test_permanent_record_error_counts_what_was_acknowledged(settings):
    pub, _ = _publisher(settings, [None, ok_reply(3, {2: 10})])  # MSG_SIZE_TOO_LARGE
    with pytest.raises(PublishError, match="error_code 10 MSG_SIZE_TOO_LARGE") as err:
        pub.publish(topics.CUSTOMER_PROFILE, _records(6))
    assert err.value.acknowledged == 5


@pytest.mark.parametrize("status,body,expected", [
    (404, {"error_code": 40401, "message": "Topic not found"}, "does not exist"),
    (415, {"error_code": 415, "message": "Unsupported Media Type"}, "HTTP 415"),
    (400, {"error_code": 400, "message": "bad"}, "HTTP 400"),
])
def test_client_errors_are_permanent(settings, status, body, expected):
    pub, session = _publisher(settings, [lambda _records: _response(status, body)])
    with pytest.raises(PublishError, match=expected):
        pub.publish(topics.ORDER_PLACED, [("c", events.new_order(random.Random(1), "c", NOW))])
    assert len(session.calls) == 1


def test_mismatched_reply_is_an_error(settings):
    pub, _ = _publisher(settings, [{"offsets": [{"partition": 0, "offset": 1}]}])
    with pytest.raises(PublishError, match="1 offsets for 2 records"):
        pub.publish(topics.CUSTOMER_PROFILE, _records(2))


def test_record_not_conforming_to_the_schema(settings):
    pub, session = _publisher(settings, [])
    bad = dict(_records(1)[0][1])
    del bad["email"]
    with pytest.raises(PublishError, match="does not conform to customer_profile_upsert.avsc"):
        pub.publish(topics.CUSTOMER_PROFILE, [(bad["customer_id"], bad)])
    assert session.calls == []


def test_non_avro_topic_is_refused(settings):
    pub, _ = _publisher(settings, [])
    with pytest.raises(PublishError, match="not Avro"):
        pub.publish(topics.CUSTOMER_CONSOLIDATED, [("k", {"a": 1})])


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(0)
    for attempt, full in [(1, 0.2), (2, 0.4), (3, 0.8), (10, 10.0)]:
        delays = [backoff_delay(attempt, rng) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 1


def test_make_publisher_picks_the_transport(mock_registry_url):
    rest = make_publisher(PublisherSettings(schema_registry_url=mock_registry_url))
    kafka = make_publisher(PublisherSettings(transport="kafka", schema_registry_url=mock_registry_url,
                                             bootstrap_servers="127.0.0.1:1"))
    try:
        assert isinstance(rest, RestPublisher) and isinstance(kafka, KafkaPublisher)
        assert kafka.producer_conf["enable.idempotence"] is True and kafka.producer_conf["acks"] == "all"
        assert kafka.producer_conf["bootstrap.servers"] == "127.0.0.1:1"
    finally:
        rest.close()
        kafka.close()


def test_publish_error_is_one_line():
    err = PublishError("HTTP proxy http://p", "t", "first\nsecond   third", acknowledged=3)
    assert str(err) == "publish to t via HTTP proxy http://p failed: first second third"
    assert err.acknowledged == 3 and isinstance(err, RuntimeError)
