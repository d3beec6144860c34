"""The consistency check on the real engines: a real broker, Spark + Delta for bronze, silver, gold and
the score job (which publishes gold's rows), and the TEST DOUBLE of ksqlDB's consolidated view (no
ksqlDB runs here; tests/support/ksqldb_view_double.py computes the view with ksql/'s semantics).

One simulated history (late and duplicate events included, as the seed makes them) through both sides:
no disagreement. Then each fault is found and named: a record ksqlDB lost, a gold row corrupted in
Delta; and a change gold's jobs have not processed yet is catching up, not a disagreement. A forgotten
customer (erasure request, gold's row deleted) is left out and counted as forgotten.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from consistency import __main__ as cli
from consistency import read
from consistency.compare import compare
from consistency.settings import ConsistencySettings
from schemas import serde, topics
from seed import events as seed_events
from seed.simulator import SimConfig, Simulator
from spark.jobs import bronze, gold, score, silver
from tests.support import pipeline
from tests.support.ksqldb_view_double import KsqlDbViewDouble

CUSTOMERS = 150


def wait_until(check, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def view_settled(view: KsqlDbViewDouble, customers: int) -> None:
    """Every customer in the double's view, and its topic written (nothing more to read for a while)."""
    wait_until(lambda: len(view.customers) >= customers, what="the view double to see every customer")
    time.sleep(3)  # its producer lingers 5 ms; the source topics are finite


@pytest.fixture(scope="module")
def stack(tmp_path_factory, kafka_broker, schema_registry, spark):
    root = tmp_path_factory.mktemp("consistency")
    jobs = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(root / "delta"),
                                 pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, jobs)
    sim = Simulator(SimConfig(customers=CUSTOMERS, days=60, seed=11))
    history = list(sim.events())
    pipeline.produce(kafka_broker, jobs, ((e.topic, e.key, e.record) for e in history))
    view = KsqlDbViewDouble(kafka_broker.bootstrap, schema_registry.url, from_beginning=True,
                            topic_prefix=jobs.topic_prefix).start()
    for job in (bronze, silver, gold, score):  # score trains the model first (none yet)
        pipeline.run(job, spark, jobs)
    view_settled(view, CUSTOMERS)
    view.stop()
    check = ConsistencySettings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "SCHEMA_REGISTRY_URL": schema_registry.url,
        "TOPIC_PREFIX": jobs.topic_prefix, "CONSISTENCY_SETTLE_S": "0", "CONSISTENCY_READ_TIMEOUT_S": "60",
    })
    return jobs, check, history


def test_the_two_customer_360s_agree_on_a_simulated_history(stack):
    jobs, check, history = stack
    assert any(e.record is not None for e in history)
    report = cli.run(check)
    print(report.line())
    assert report.customers == CUSTOMERS
    assert (report.checked, report.disagreeing, report.catching_up) == (CUSTOMERS, 0, 0), report.examples


def test_a_record_ksqldb_lost_is_found_and_named(stack, kafka_broker, schema_registry):
    jobs, check, history = stack
    victim = next(e for e in history if e.topic == topics.ORDER_PLACED)
    lost = KsqlDbViewDouble(
        kafka_broker.bootstrap, schema_registry.url, from_beginning=True, topic_prefix=jobs.topic_prefix,
        drop=lambda topic, v: topic == topics.ORDER_PLACED.name and v["order_id"] == victim.record["order_id"],
    ).start()
    try:
        view_settled(lost, CUSTOMERS)
        assert lost.dropped >= 1
    finally:
        lost.stop()
    report = cli.run(check)
    print(report.line())
    named = {(d.customer_id, d.metric) for d in report.examples}
    assert report.disagreeing == 1 and (victim.key, "order_count") in named, report.line()
    assert report.agreeing == CUSTOMERS - 1


def test_a_corrupted_gold_row_is_found_and_named(stack, spark):
    jobs, check, history = stack
    target = sorted({e.key for e in history if e.topic == topics.ORDER_PLACED})[-1]
    spark.sql(f"UPDATE delta.`{jobs.table('gold', 'c360')}` SET lifetime_value = lifetime_value + 1000 "
              f"WHERE customer_id = '{target}'")
    pipeline.run(score, spark, jobs)  # the change feed carries the corruption to gold's topic
    report = cli.run(check)
    print(report.line())
    found = {d.customer_id: d for d in report.examples}
    assert target in found and found[target].metric == "lifetime_value", report.line()
    assert float(found[target].gold) - float(found[target].view) == pytest.approx(1000.0, abs=0.01)


def test_a_change_gold_has_not_processed_is_catching_up(stack, kafka_broker, schema_registry):
    """Gold's jobs are not run after this order (a stopped job): the view has it, gold cannot yet."""
    jobs, check, history = stack
    before = cli.run(check)
    customer = sorted({e.key for e in history if e.topic == topics.ORDER_PLACED})[0]
    view = KsqlDbViewDouble(kafka_broker.bootstrap, schema_registry.url, from_beginning=True,
                            topic_prefix=jobs.topic_prefix).start()
    try:
        view_settled(view, CUSTOMERS)
        orders = view.row(customer)["order_count"]
        order = seed_events.new_order(random.Random(7), customer, int(time.time() * 1000),
                                      items=[{"sku": "LATE-1", "quantity": 1, "price": 10.0}])
        pipeline.produce(kafka_broker, jobs, [(topics.ORDER_PLACED, customer, order)])
        wait_until(lambda: view.row(customer)["order_count"] == orders + 1, what="the view to count the new order")
        time.sleep(2)
    finally:
        view.stop()
    report = cli.run(check)
    print(report.line())
    assert report.catching_up == before.catching_up + 1
    assert customer not in {d.customer_id for d in report.examples}, "lag is not disagreement"
    # (this view double lost nothing: the order lost before is back, the corrupted gold row still differs)
    assert report.disagreeing == 1 and report.examples[0].metric == "lifetime_value"


def test_the_entry_point_publishes_the_report_and_fails_in_one_line(stack):
    jobs, check, _ = stack
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": check.bootstrap_servers,
           "SCHEMA_REGISTRY_URL": check.schema_registry_url, "TOPIC_PREFIX": check.topic_prefix,
           "CONSISTENCY_SETTLE_S": "0"}
    done = subprocess.run([sys.executable, "-m", "consistency"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"consistency: {CUSTOMERS} customers, ")
    topic = check.topic(topics.CONSISTENCY).name
    consumer = Consumer({"bootstrap.servers": check.bootstrap_servers, "group.id": "t", "enable.auto.commit": False})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, high - 1)])
        msg = wait_until(lambda: consumer.poll(1.0), what="the newest report")
        codec = serde.TopicSerde(serde.registry_client(check.schema_registry_url), check.topic(topics.CONSISTENCY))
        newest = codec.deserialize(msg.value())
    finally:
        consumer.close()
    assert msg.key() == b"consistency" and newest["customers"] == CUSTOMERS
    assert newest["checked"] == newest["agreeing"] + newest["disagreeing"]

    down = subprocess.run([sys.executable, "-m", "consistency"], capture_output=True, text=True, timeout=120,
                          env={**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert down.returncode == 2 and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1 and "KAFKA_BOOTSTRAP_SERVERS" in down.stderr, down.stderr


def test_a_forgotten_customer_is_left_out_not_counted_as_disagreeing(stack, spark, kafka_broker, schema_registry):
    """Last in this module (it changes the customer count). The customer is forgotten: the erasure request
    on its topic, gold's row deleted (as spark/jobs/erasure.py does; ksqlDB's aggregates stay,
    confluentinc/ksql#6938). Its next order then makes the two sides differ for good (the view counts
    every order, gold starts again from that one), a settled difference the check must not report."""
    jobs, check, history = stack
    ordering = sorted({e.key for e in history if e.topic == topics.ORDER_PLACED})
    gone = ordering[len(ordering) // 2]
    pipeline.produce(kafka_broker, jobs, [(topics.CUSTOMER_ERASURE, gone, {
        "customer_id": gone, "request_id": "5d0e8f7a-1b2c-4d3e-9f40-a1b2c3d4e5f6",
        "requested_at": int(time.time() * 1000), "requested_by": "tests"})])
    spark.sql(f"DELETE FROM delta.`{jobs.table('gold', 'c360')}` WHERE customer_id = '{gone}'")
    before = cli.run(check)
    view = KsqlDbViewDouble(kafka_broker.bootstrap, schema_registry.url, from_beginning=True,
                            topic_prefix=jobs.topic_prefix).start()
    try:
        view_settled(view, CUSTOMERS)
        orders = view.row(gone)["order_count"]
        order = seed_events.new_order(random.Random(8), gone, int(time.time() * 1000),
                                      items=[{"sku": "AFTER-1", "quantity": 1, "price": 5.0}])
        pipeline.produce(kafka_broker, jobs, [(topics.ORDER_PLACED, gone, order)])
        wait_until(lambda: view.row(gone)["order_count"] == orders + 1, what="the view to count the new order")
        time.sleep(2)
    finally:
        view.stop()
    for job in (bronze, silver, gold, score):  # gold's side, after the view's: settled, nothing catching up
        pipeline.run(job, spark, jobs)

    gold_side, horizon = read.gold_and_horizon(check)
    view_side = read.view(check)
    assert gold_side[gone].metrics["order_count"] == 1 and view_side[gone].metrics["order_count"] == orders + 1
    unaware = compare(view_side, gold_side, now_ms=int(time.time() * 1000), gold_horizon_ms=horizon, settle_ms=0,
                      examples=CUSTOMERS)
    assert gone in {d.customer_id for d in unaware.examples}, "without the erasures the customer disagrees"

    report = cli.run(check)
    print(report.line())
    assert report.forgotten == 1 and report.customers == CUSTOMERS - 1
    assert gone not in {d.customer_id for d in report.examples}
    assert report.disagreeing == before.disagreeing, report.line()
