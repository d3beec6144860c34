"""``python -m verify`` (make verify) against the local stack: the real broker, the four Spark jobs
streaming on a 1 s trigger in the test session, redis-server, the web UI and its feeder; the doubles
where no real engine can run here (Schema Registry, Redpanda's HTTP Proxy, ksqlDB's consolidated view:
tests/support/*_double.py). The probe is followed hop by hop; with the gold job stopped the run fails
and names gold."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time

import pytest

from schemas import probes
from seed.simulator import SimConfig, Simulator
from spark.jobs import bronze, gold, score, silver, train
from tests.engines.test_webapp_browser import serving
from tests.engines.test_webapp_helpers import (
    db_url,
    ensure_topics,
    flush,
    running_feeder,
    settings,
    wait_until,
)
from tests.support import pipeline
from tests.support.http_proxy_double import HttpProxyDouble
from tests.support.ksqldb_view_double import KsqlDbViewDouble
from tests.support.paths import REPO
from verify.follow import probe_records

HOPS = ["kafka", "ksqldb", "web", "bronze", "silver", "gold", "score"]


def verify(env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verify"], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s + 60,
                          env={**os.environ, "PYTHONPATH": str(REPO), "VERIFY_TIMEOUT_S": str(timeout_s), **env})


def test_an_unreachable_stack_is_one_line_naming_what_and_where(kafka_broker):
    bad = verify({"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "SCHEMA_REGISTRY_URL": "mock://verify"}, 5)
    assert bad.returncode == 2, bad
    assert bad.stdout == "" and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "Kafka unreachable at 127.0.0.1:9 (KAFKA_BOOTSTRAP_SERVERS)" in bad.stderr
    wrong = verify({"VERIFY_HOPS": "kafka,nowhere"}, 5)
    assert wrong.returncode == 2 and "VERIFY_HOPS='kafka,nowhere' is invalid" in wrong.stderr, wrong


def test_make_verify_follows_a_probe_through_the_local_stack_and_names_the_stopped_job(
        spark, kafka_broker, redis_server, schema_registry, tmp_path):
    ensure_topics(kafka_broker)
    # History under a prefix of its own, then a model: the live jobs score with it.
    history = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(tmp_path / "history"),
                                    pipeline.new_prefix(), MODEL_DIR=str(tmp_path / "model"))
    pipeline.create_topics(kafka_broker, history)
    old_probe = probes.new_probe_id()
    sim = Simulator(SimConfig(customers=120, days=30, seed=3))
    events = [(e.topic, e.key, e.record) for e in sim.events()]
    events += [(t, old_probe, r) for t, r in probe_records(old_probe, int(time.time() * 1000) - 86_400_000,
                                                             random.Random(1))]
    pipeline.produce(kafka_broker, history, events)
    for job in (bronze, silver):
        pipeline.run(job, spark, history)
    customers, orders, _ = train.silver(spark, history)
    assert orders.count() > 0 and customers.where(customers.customer_id == old_probe).count() == 0  # never trained on
    train.run(spark, history)

    # The live pipeline: the product's topic names, from their current ends, fresh tables.
    live = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(tmp_path / "live"), "",
                                 TRIGGER_INTERVAL="1 second", STARTING_OFFSETS="latest",
                                 MODEL_DIR=str(tmp_path / "model"))
    url = db_url(redis_server)
    flush(url)
    web = settings(url, kafka_broker.bootstrap, schema_registry.url)
    from webapp import create_app

    queries = []
    view = KsqlDbViewDouble(kafka_broker.bootstrap, schema_registry.url).start()
    try:
        with HttpProxyDouble(schema_registry, forward_bootstrap=kafka_broker.bootstrap) as proxy, \
                running_feeder(web), serving(create_app(web)) as base:
            for job in (bronze, silver, gold, score):
                queries += job.start(spark, live)
            env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "SCHEMA_REGISTRY_URL": schema_registry.url,
                   "PUBLISH_TRANSPORT": "rest", "REST_PROXY_URL": proxy.url, "KSQLDB_URL": view.url,
                   "WEB_URL": base}
            ok = verify(env, 240)
            print(ok.stdout)
            assert ok.returncode == 0, ok.stdout + ok.stderr
            lines = ok.stdout.strip().splitlines()
            assert lines[-1] == f"PASS {len(HOPS)}/{len(HOPS)}"
            rows = [line.split() for line in lines if line.startswith("  PASS ")]
            assert [r[1] for r in rows] == HOPS
            seen = {r[1]: float(r[2]) for r in rows}
            # each layer reads the one before it (silver's hop waits for all three silver queries: gold may
            # see the probe's profile and order before silver's activations query has committed it)
            assert 0 <= seen["kafka"] <= seen["bronze"] <= min(seen["silver"], seen["gold"]) <= seen["gold"] <= seen["score"]
            (fresh,) = [line for line in lines if line.startswith("  freshness ")]
            # (the score job's status may come after its score record, which ends the run)
            assert all(q in fresh for q in ("bronze ", "silver_orders ", "gold_c360 ")), fresh
            (probe,) = {w for line in lines for w in line.replace(",", " ").split() if probes.is_probe(w)}
            # what the hops saw is what the pipeline holds
            assert view.row(probe)["order_count"] == 1
            c360 = spark.read.format("delta").load(live.table("gold", "c360")).where(f"customer_id = '{probe}'")
            # gold names the probe from its first committed row (the profile); its order may be a batch later
            wait_until(lambda: c360.select("order_count").first().order_count == 1, 60, "the probe's order in gold")

            # the gold job stops: verify fails, names gold, says what it last saw there
            (gold_query,) = [q for q in queries if q.name == "gold_c360"]
            gold_query.stop()
            failed = verify(env, 45)
            print(failed.stdout)
            assert failed.returncode == 1, failed.stdout + failed.stderr
            last = failed.stdout.strip().splitlines()[-1]
            assert last.startswith(f"FAIL {len(HOPS) - 2}/{len(HOPS)}: first failed hop gold "), last
            assert {line.split()[1] for line in failed.stdout.splitlines() if line.startswith("  FAIL ")} == {
                "gold", "score"}
            assert "Traceback" not in failed.stderr
    finally:
        for q in queries:
            q.stop()
        view.stop()
    assert view.error is None


@pytest.fixture(autouse=True)
def _no_leftover_streams(spark):
    yield
    for q in spark.streams.active:
        q.stop()
