from __future__ import annotations

import base64
import json
import random

import pytest
import requests

from schemas import serde, topics
from schemas.partitioning import LIBRDKAFKA_PARTITIONER, partition_for_key
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
    or a callable(records) -> Response. GET /topics answers ``topics`` (every source topic by default)
    or the next of ``get_script`` (same kinds of steps)."""

    def __init__(self, script, topics_listed=None, get_script=()):
        self.script = list(script)
        self.calls: list[dict] = []
        self.gets: list[str] = []
        self.topics = [t.name for t in topics.SOURCE_TOPICS] if topics_listed is None else topics_listed
        self.get_script = list(get_script)

    def get(self, url, headers, timeout):
        self.gets.append(url)
        step = self.get_script.pop(0) if self.get_script else None
        if step is None:
            return _response(200, self.topics)
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, int):
            return _response(step, {"error_code": step * 100, "message": "scripted"})
        return _response(200, step)

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


def _publisher(settings, script, sleeps=None, **session_kw):
    session = FakeSession(script, **session_kw)
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


def test_every_record_names_its_murmur2_partition_and_the_topic_list_is_asked_once(settings):
    pub, session = _publisher(settings, [])
    recs = _records(40, seed=7)
    assert pub.publish(topics.CUSTOMER_PROFILE, recs[:20]) == 20
    assert pub.publish(topics.CUSTOMER_PROFILE, recs[20:]) == 20
    sent = [r for c in session.calls for r in c["records"]]
    n = topics.CUSTOMER_PROFILE.partitions
    assert [r["partition"] for r in sent] == [partition_for_key(k, n) for k, _ in recs]
    assert len({r["partition"] for r in sent}) == n  # 40 keys spread over every partition
    assert session.gets == ["http://proxy.test:8082/topics"]  # cached per topic


def test_missing_topic_is_one_line_before_anything_is_registered(settings):
    pub, session = _publisher(settings, [], topics_listed=[topics.ORDER_PLACED.name])
    with pytest.raises(PublishError) as err:
        pub.publish(topics.CUSTOMER_PROFILE, _records(3))
    msg = str(err.value)
    assert "topic dom.customer.profile.upsert.v1 does not exist" in msg and "REST_PROXY_URL" in msg
    assert "\n" not in msg and session.calls == []
    assert pub._serializers._client.get_subjects() == []  # no schema registered for the missing topic
    # Not cached as missing: once the topic is there, the next publish goes through.
    session.topics.append(topics.CUSTOMER_PROFILE.name)
    assert pub.publish(topics.CUSTOMER_PROFILE, _records(2)) == 2
    assert pub._serializers._client.get_subjects() == [topics.CUSTOMER_PROFILE.subject]


def test_topic_list_failures_retried_then_named(settings):
    pub, session = _publisher(settings, [], get_script=[503, requests.ConnectionError("refused")])
    assert pub.publish(topics.CUSTOMER_PROFILE, _records(1)) == 1
    assert len(session.gets) == 3 and pub.stats.retries == 2
    pub, session = _publisher(settings, [], get_script=[404])
    with pytest.raises(PublishError) as err:
        pub.publish(topics.CUSTOMER_PROFILE, _records(1))
    assert "GET /topics answered HTTP 404" in str(err.value) and "is this the HTTP Proxy?" in str(err.value)
    assert "http://proxy.test:8082 (REST_PROXY_URL)" in str(err.value) and session.calls == []


def test_per_record_error_carries_the_proxy_text(settings):
    text = "Topic dom.customer.profile.upsert.v1 not present in metadata after 60000 ms."
    reply = {"offsets": [{"partition": None, "offset": None, "error_code": 50003, "error": text}] * 2}
    pub, session = _publisher(settings, [reply])
    with pytest.raises(PublishError) as err:
        pub.publish(topics.CUSTOMER_PROFILE, _records(2))
    msg = str(err.value)
    assert f"record 0 rejected with error_code 50003: {text}" in msg and "ERR_50003?" not in msg
    assert len(session.calls) == 1  # not retried: a missing topic does not come back by waiting


def test_retriable_record_error_text_is_kept_when_retries_run_out(settings):
    bad = {"offsets": [{"partition": 1, "offset": -1, "error_code": 6, "error": "leader moved to 2"}]}
    pub, _ = _publisher(settings, [bad, bad, bad])
    with pytest.raises(PublishError, match="error_code 6 NOT_LEADER_FOR_PARTITION: leader moved to 2; gave up"):
        pub.publish(topics.CUSTOMER_PROFILE, _records(1))


def test_timeout_on_a_topic_deleted_meanwhile_names_the_topic(settings):
    # The proxy blocks for max.block.ms on a topic it has no metadata for: our request times out first.
    pub, session = _publisher(settings, [None, requests.ReadTimeout("slow")])
    assert pub.publish(topics.CUSTOMER_PROFILE, _records(1)) == 1
    session.topics.remove(topics.CUSTOMER_PROFILE.name)
    with pytest.raises(PublishError, match="topic dom.customer.profile.upsert.v1 does not exist"):
        pub.publish(topics.CUSTOMER_PROFILE, _records(1))
    assert len(session.calls) == 2 and len(session.gets) == 2  # one POST timed out, no blind retries


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
    (400, {"error_code": 400, "message": "Illegal base64 character"}, "HTTP 400, error_code 400: Illegal base64"),
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
        assert kafka.producer_conf["partitioner"] == LIBRDKAFKA_PARTITIONER == "murmur2_random"
    finally:
        rest.close()
        kafka.close()


def test_publish_error_is_one_line():
    err = PublishError("HTTP proxy http://p", "t", "first\nsecond   third", acknowledged=3)
    assert str(err) == "publish to t via HTTP proxy http://p failed: first second third"
    assert err.acknowledged == 3 and isinstance(err, RuntimeError)
