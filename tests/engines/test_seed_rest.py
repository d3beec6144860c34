"""REST transport against the HTTP-proxy test double and the Schema Registry test double (real HTTP),
and ``python -m seed`` as a subprocess."""

from __future__ import annotations

import base64
import csv
import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
import requests

from schemas import serde, topics
from schemas.partitioning import partition_for_key
from seed.publish import PublishError, RestPublisher
from seed.settings import PublisherSettings
from seed.simulator import SimConfig, Simulator
from tests.support.http_proxy_double import BINARY_V2, HttpProxyDouble
from tests.support.paths import REPO
from tests.support.procs import free_port
from tests.support.schema_registry_double import SchemaRegistryDouble

TIME_FIELD = {topics.CUSTOMER_PROFILE.name: "updated_at", topics.ORDER_PLACED.name: "placed_at",
              topics.ACTIVATION_STATUS.name: "delivered_at"}


@pytest.fixture
def proxy(schema_registry):
    with HttpProxyDouble(schema_registry) as double:
        yield double


def _settings(proxy, registry_url, **kw) -> PublisherSettings:
    return PublisherSettings(rest_proxy_url=proxy.url, schema_registry_url=registry_url,
                             **{"request_timeout_s": 2.0, "max_retries": 3, "batch_size": 50, **kw})


def _normalise(record: dict) -> dict:
    """A decoded record compared with what was sent: timestamps back to epoch millis."""
    out = dict(record)
    for field in ("created_at", "updated_at", "placed_at", "delivered_at"):
        if field in out:
            out[field] = serde.to_millis(out[field])
    return out


def test_every_record_arrives_framed_and_decodes_to_what_was_sent(proxy, schema_registry):
    sim = Simulator(SimConfig(customers=60, days=20, seed=21))
    evs = list(sim.events())
    publisher = RestPublisher(_settings(proxy, schema_registry.url))
    try:
        for topic in topics.SOURCE_TOPICS:
            records = [(e.key, e.record) for e in evs if e.topic is topic]
            assert publisher.publish(topic, records) == len(records)
    finally:
        publisher.close()
    assert proxy.decode_errors == []
    assert proxy.total() == len(evs)
    for topic in topics.SOURCE_TOPICS:
        sent = [(e.key, e.record) for e in evs if e.topic is topic]
        got = proxy.records(topic.name)
        assert [(r.key_str, _normalise(r.decoded)) for r in got] == sent
        # The id in every frame is the one the registry holds for <topic>-value.
        registered = {v["id"] for v in [requests.get(
            f"{schema_registry.url}/subjects/{topic.subject}/versions/latest", timeout=5).json()]}
        assert {r.schema_id for r in got} == registered
    posts = [r for r in proxy.requests if r.method == "POST"]
    assert posts and all(r.content_type == BINARY_V2 and r.status == 200 and r.records <= 50 for r in posts)
    # Per-customer order is kept within each topic (one key -> one partition, records sent in order).
    for topic in topics.SOURCE_TOPICS:
        last: dict[str, int] = {}
        for r in proxy.records(topic.name):
            t = r.decoded[TIME_FIELD[topic.name]]
            assert serde.to_millis(t) >= last.get(r.key_str, 0)
            last[r.key_str] = serde.to_millis(t)


def _post(proxy, topic: str, body, content_type: str = BINARY_V2) -> requests.Response:
    return requests.post(f"{proxy.url}/topics/{topic}", data=json.dumps(body), timeout=5,
                         headers={"Content-Type": content_type})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_double_rejects_the_avro_embedded_format_and_bad_base64_like_the_real_proxy(proxy):
    body = {"records": [{"key": None, "value": base64.b64encode(b"x").decode()}]}
    avro = _post(proxy, topics.ORDER_PLACED.name, body, "application/vnd.kafka.avro.v2+json")
    assert avro.status_code == 415
    not_b64 = _post(proxy, topics.ORDER_PLACED.name, {"records": [{"value": "%%%"}]})
    assert not_b64.status_code == 400
    assert not_b64.json()["error_code"] == 400 and "base64" in not_b64.json()["message"]
    unframed = _post(proxy, topics.ORDER_PLACED.name, body)
    assert unframed.status_code == 200 and unframed.json()["offsets"][0]["offset"] == 0
    assert len(proxy.decode_errors) == 1 and "framed" in proxy.decode_errors[0][2]


def test_double_blocks_then_answers_200_with_50003_per_record_for_a_missing_topic(schema_registry):
    with HttpProxyDouble(schema_registry, metadata_block_s=0.4) as proxy:
        started = time.monotonic()
        reply = _post(proxy, "no.such.topic", {"records": [{"key": _b64("a"), "value": _b64("1")},
                                                           {"key": _b64("b"), "value": _b64("2")}]})
        waited = time.monotonic() - started
        listed = requests.get(f"{proxy.url}/topics", timeout=5).json()
    assert reply.status_code == 200 and waited >= 0.4
    message = "Topic no.such.topic not present in metadata after 400 ms."
    assert reply.json()["offsets"] == [
        {"partition": None, "offset": None, "error_code": 50003, "error": message}] * 2
    assert "no.such.topic" not in listed and topics.ORDER_PLACED.name in listed
    assert proxy.total() == 0


def test_double_places_keys_by_murmur2_and_honours_an_explicit_partition(proxy):
    name, count = topics.CUSTOMER_PROFILE.name, topics.CUSTOMER_PROFILE.partitions
    keys = [f"cust-{i}" for i in range(60)]
    placed = _post(proxy, name, {"records": [{"key": _b64(k), "value": _b64("v")} for k in keys]})
    assert [o["partition"] for o in placed.json()["offsets"]] == [partition_for_key(k, count) for k in keys]
    explicit = _post(proxy, name, {"records": [{"key": _b64(k), "value": _b64("v"), "partition": 1}
                                                for k in keys[:5]]})
    assert [o["partition"] for o in explicit.json()["offsets"]] == [1] * 5
    beyond = _post(proxy, name, {"records": [{"key": _b64("k"), "value": _b64("v"), "partition": count}]})
    assert beyond.status_code == 200 and beyond.json()["offsets"][0]["error_code"] == 3


def test_missing_topic_is_one_line_at_once_and_registers_nothing():
    registry = SchemaRegistryDouble().start()  # its own: the session registry has the subjects already
    # A produce would block for the double's metadata_block_s: the publisher must not get there.
    try:
        with HttpProxyDouble(registry, topics={}, metadata_block_s=30) as proxy:
            publisher = RestPublisher(_settings(proxy, registry.url))
            evs = [e for e in Simulator(SimConfig(customers=3, days=2)).events()
                   if e.topic is topics.CUSTOMER_PROFILE]
            started = time.monotonic()
            with pytest.raises(PublishError) as err:
                publisher.publish(topics.CUSTOMER_PROFILE, [(e.key, e.record) for e in evs])
            elapsed = time.monotonic() - started
    finally:
        registry.stop()
    msg = str(err.value)
    assert f"topic {topics.CUSTOMER_PROFILE.name} does not exist" in msg and proxy.url in msg
    assert "REST_PROXY_URL" in msg and "\n" not in msg and elapsed < 5
    assert [r.method for r in proxy.requests] == ["GET"]
    assert registry.subjects == {} and registry.requests == []


def test_a_topic_gone_after_the_check_is_reported_with_the_proxys_own_text(schema_registry):
    with HttpProxyDouble(schema_registry, metadata_block_s=0.3) as proxy:
        publisher = RestPublisher(_settings(proxy, schema_registry.url))
        records = _profiles(4, seed=8)
        assert publisher.publish(topics.CUSTOMER_PROFILE, records[:2]) == 2  # topic seen, count cached
        del proxy.topics[topics.CUSTOMER_PROFILE.name]
        with pytest.raises(PublishError) as err:
            publisher.publish(topics.CUSTOMER_PROFILE, records[2:])
        # With a request timeout shorter than the proxy's block, the publisher asks GET /topics again.
        short = RestPublisher(_settings(proxy, schema_registry.url, request_timeout_s=0.1))
        short._partitions[topics.CUSTOMER_PROFILE.name] = topics.CUSTOMER_PROFILE.partitions
        with pytest.raises(PublishError, match="does not exist") as timed_out:
            short.publish(topics.CUSTOMER_PROFILE, records[2:])
    text = f"Topic {topics.CUSTOMER_PROFILE.name} not present in metadata after 300 ms."
    assert f"error_code 50003: {text}" in str(err.value)
    assert "gave up" not in str(timed_out.value) and short.stats.retries == 0


def _profiles(n: int, seed: int = 1):
    evs = Simulator(SimConfig(customers=n, days=1, seed=seed, late_share=0)).events()
    return [(e.key, e.record) for e in evs if e.topic is topics.CUSTOMER_PROFILE][:n]


def test_proxy_500_then_success(proxy, schema_registry):
    proxy.fail_next = [500, 503]
    publisher = RestPublisher(_settings(proxy, schema_registry.url))
    records = _profiles(10)
    assert publisher.publish(topics.CUSTOMER_PROFILE, records) == 10
    assert [(r.method, r.status) for r in proxy.requests] == [("GET", 200), ("POST", 500), ("POST", 503),
                                                               ("POST", 200)]
    assert publisher.stats.retries == 2
    assert [r.key_str for r in proxy.records(topics.CUSTOMER_PROFILE.name)] == [k for k, _ in records]


def test_connection_reset_and_per_record_errors_are_retried(proxy, schema_registry):
    proxy.reset_next = 1
    proxy.record_errors = [{2: 6, 5: 6}]  # NOT_LEADER_FOR_PARTITION on two records
    publisher = RestPublisher(_settings(proxy, schema_registry.url))
    records = _profiles(8, seed=2)
    assert publisher.publish(topics.CUSTOMER_PROFILE, records) == 8
    got = [r.key_str for r in proxy.records(topics.CUSTOMER_PROFILE.name)]
    assert sorted(got) == sorted(k for k, _ in records) and len(got) == 8
    assert [r.records for r in proxy.requests if r.method == "POST" and r.status == 200] == [8, 2]


def test_timeout_is_retried_and_the_late_write_is_a_duplicate(proxy, schema_registry):
    proxy.delay_next = [1.0]
    publisher = RestPublisher(_settings(proxy, schema_registry.url, request_timeout_s=0.3))
    records = _profiles(3, seed=3)
    assert publisher.publish(topics.CUSTOMER_PROFILE, records) == 3
    assert publisher.stats.retries == 1
    # The timed-out request was written anyway once the proxy woke up: at-least-once delivery.
    deadline = time.monotonic() + 5
    while proxy.total() < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    keys = Counter(r.key_str for r in proxy.records(topics.CUSTOMER_PROFILE.name))
    assert keys == Counter({k: 2 for k, _ in records})


def test_permanent_record_error_stops_with_acknowledged_count(proxy, schema_registry):
    proxy.record_errors = [{}, {1: 10}]  # second batch: MSG_SIZE_TOO_LARGE on record 1
    publisher = RestPublisher(_settings(proxy, schema_registry.url, batch_size=4))
    with pytest.raises(PublishError, match="MSG_SIZE_TOO_LARGE") as err:
        publisher.publish(topics.CUSTOMER_PROFILE, _profiles(8, seed=4))
    assert err.value.acknowledged == 4 + 3


def test_incompatible_schema_is_rejected_with_a_clear_error():
    registry = SchemaRegistryDouble().start()
    try:
        old = {"type": "record", "name": "OrderPlaced", "namespace": "io.marketingengine.order",
               "fields": [{"name": "legacy_required", "type": "string"}]}
        # Our schema has required fields without defaults that the registered one lacks: under BACKWARD
        # it cannot read data written with it, so registering ours is refused (409).
        registry.register(topics.ORDER_PLACED.subject, json.dumps(old))
        with HttpProxyDouble(registry) as proxy:
            publisher = RestPublisher(_settings(proxy, registry.url))
            order = next(e for e in Simulator(SimConfig(customers=30, days=30)).events()
                         if e.topic is topics.ORDER_PLACED)
            with pytest.raises(PublishError) as err:
                publisher.publish(topics.ORDER_PLACED, [(order.key, order.record)])
            assert [r.method for r in proxy.requests] == ["GET"]  # the topic check; nothing produced
    finally:
        registry.stop()
    msg = str(err.value)
    assert "incompatible" in msg and "HTTP 409" in msg and registry.url in msg and "\n" not in msg


# ---- python -m seed as a subprocess ---------------------------------------------------------------------


def run_seed(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SEED_", "PUBLISH_"))}
    environ.update({"PYTHONPATH": str(REPO), **env})
    return subprocess.run([sys.executable, "-m", "seed", *args], cwd=REPO, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_publishes_everything_and_writes_ground_truth(proxy, schema_registry, tmp_path):
    truth = tmp_path / "truth.csv"
    done = run_seed(["--customers", "40", "--days", "15", "--seed", "5", "--ground-truth", str(truth)],
                    {"REST_PROXY_URL": proxy.url, "SCHEMA_REGISTRY_URL": schema_registry.url,
                     "PUBLISH_BATCH_SIZE": "100"})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    expected = list(Simulator(SimConfig(customers=40, days=15, seed=5)).events())
    assert proxy.total() == len(expected) and proxy.decode_errors == []
    assert Counter(e.topic.name for e in expected) == Counter(
        {t.name: len(proxy.records(t.name)) for t in topics.SOURCE_TOPICS})
    summary = [line for line in done.stderr.splitlines() if line.startswith("seed: sent")]
    assert len(summary) == 1 and f"sent {len(expected)} events" in summary[0]
    with open(truth, newline="") as fh:
        rows = list(csv.DictReader(fh))
    profiles = {r.key_str for r in proxy.records(topics.CUSTOMER_PROFILE.name)}
    assert {r["customer_id"] for r in rows} == profiles and len(rows) == 40


def _one_line_failure(done: subprocess.CompletedProcess) -> str:
    """The run failed with exit 1 and stderr is exactly one error line, no traceback."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("seed: error: ")
    return lines[0]


FAST = {"PUBLISH_MAX_RETRIES": "1", "PUBLISH_TIMEOUT_S": "2"}


def test_cli_unreachable_registry_is_one_line_and_nonzero(proxy):
    dead = f"http://127.0.0.1:{free_port()}"
    done = run_seed(["--customers", "3", "--days", "2"],
                    {"REST_PROXY_URL": proxy.url, "SCHEMA_REGISTRY_URL": dead, **FAST})
    line = _one_line_failure(done)
    assert f"schema registry {dead} (SCHEMA_REGISTRY_URL)" in line and "unreachable" in line
    assert [r.path for r in proxy.requests] == ["/topics"]  # the topic check, no produce


def test_cli_registry_address_pointing_at_something_else(proxy):
    """SCHEMA_REGISTRY_URL at the HTTP proxy: it answers, but not the registry's API."""
    done = run_seed(["--customers", "3", "--days", "2"],
                    {"REST_PROXY_URL": proxy.url, "SCHEMA_REGISTRY_URL": proxy.url, **FAST})
    line = _one_line_failure(done)
    assert f"schema registry {proxy.url} (SCHEMA_REGISTRY_URL)" in line
    assert "no Schema Registry API at this address" in line and "HTTP 404" in line


def test_cli_unreachable_proxy(schema_registry):
    dead = f"http://127.0.0.1:{free_port()}"
    done = run_seed(["--customers", "3", "--days", "2"],
                    {"REST_PROXY_URL": dead, "SCHEMA_REGISTRY_URL": schema_registry.url, **FAST})
    line = _one_line_failure(done)
    assert f"HTTP proxy {dead} (REST_PROXY_URL)" in line and "cannot connect" in line


def test_cli_proxy_address_pointing_at_something_else(schema_registry):
    """REST_PROXY_URL at the Schema Registry (port 8081 instead of 8082)."""
    done = run_seed(["--customers", "3", "--days", "2"],
                    {"REST_PROXY_URL": schema_registry.url, "SCHEMA_REGISTRY_URL": schema_registry.url, **FAST})
    line = _one_line_failure(done)
    assert f"HTTP proxy {schema_registry.url} (REST_PROXY_URL)" in line and "is this the HTTP Proxy?" in line


def test_cli_unknown_topic_is_one_line_and_registers_nothing():
    registry = SchemaRegistryDouble().start()
    try:
        with HttpProxyDouble(registry, topics={}, metadata_block_s=30) as proxy:
            done = run_seed(["--customers", "3", "--days", "2"],
                            {"REST_PROXY_URL": proxy.url, "SCHEMA_REGISTRY_URL": registry.url}, timeout=20)
    finally:
        registry.stop()
    line = _one_line_failure(done)
    assert f"topic {topics.CUSTOMER_PROFILE.name} does not exist" in line and "REST_PROXY_URL" in line
    assert registry.subjects == {}


def test_cli_invalid_environment_exits_2():
    done = run_seed(["--dry-run"], {"SEED_CUSTOMERS": "many"})
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "SEED_CUSTOMERS" in done.stderr
