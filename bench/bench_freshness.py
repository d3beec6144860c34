"""Freshness: time from producing an event to its gold/c360 row and to its propensity score record,
with all four streaming jobs running at once on a 1 s trigger (local[2], one Spark session).

A small simulated history is loaded and a model trained first; then probe customers (a profile and an
order each, event time = now) are produced one every --interval seconds and watched for in gold
(Delta reads) and on the score topic (a consumer). Prints p50 / p95 of both.
Run: python -m bench.bench_freshness [--probes 15] [--interval 2]
"""

from __future__ import annotations

import argparse
import time

from confluent_kafka import Consumer
from pyspark.sql import functions as F

from bench.spark_env import engines, percentile
from schemas import serde, topics
from seed.simulator import SimConfig, Simulator
from spark.jobs import bronze, gold, score, silver, train
from tests.support import pipeline


def probe_events(i: int, now_ms: int) -> list:
    cid = f"probe-{i:03d}"
    profile = {"customer_id": cid, "email": f"{cid}@example.com", "first_name": "Probe", "last_name": str(i),
               "created_at": now_ms, "updated_at": now_ms, "lifecycle_stage": "prospect", "is_active": True,
               "phone": None}
    order = {"order_id": f"{cid}-o", "customer_id": cid, "order_total": 42.0,
             "items": [{"sku": "SKU-1", "quantity": 1, "price": 42.0}], "currency": "EUR", "channel": "web",
             "placed_at": now_ms}
    return [(topics.CUSTOMER_PROFILE, cid, profile), (topics.ORDER_PLACED, cid, order)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probes", type=int, default=15)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    with engines() as env:
        batch = pipeline.job_settings(env.broker.bootstrap, env.registry.url, str(env.root / "delta"), pipeline.new_prefix())
        pipeline.create_topics(env.broker, batch)
        sim = Simulator(SimConfig(customers=200, days=30, seed=3))
        pipeline.produce(env.broker, batch, ((e.topic, e.key, e.record) for e in sim.events()))
        for job in (bronze, silver, gold):
            pipeline.run(job, env.spark, batch)
        train.run(env.spark, batch)
        live = pipeline.job_settings(env.broker.bootstrap, env.registry.url, batch.delta_root, batch.topic_prefix,
                                     TRIGGER_INTERVAL="1 second")
        queries = [q for job in (bronze, silver, gold, score) for q in job.start(env.spark, live)]
        score_topic = live.topic(topics.PROPENSITY_SCORE)
        codec = serde.TopicSerde(serde.registry_client(live.schema_registry_url), score_topic)
        consumer = Consumer({"bootstrap.servers": env.broker.bootstrap, "group.id": "freshness",
                             "auto.offset.reset": "latest"})
        consumer.subscribe([score_topic.name])
        consumer.poll(2.0)  # join the group before the probes start
        produced: dict[str, float] = {}
        to_gold: dict[str, float] = {}
        to_score: dict[str, float] = {}
        c360 = live.table("gold", "c360")
        next_probe, i, next_look = time.monotonic(), 0, 0.0
        deadline = time.monotonic() + args.timeout
        try:
            while time.monotonic() < deadline and (i < args.probes or len(to_score) < args.probes
                                                   or len(to_gold) < args.probes):
                now = time.monotonic()
                if i < args.probes and now >= next_probe:
                    pipeline.produce(env.broker, live, probe_events(i, int(time.time() * 1000)))
                    produced[f"probe-{i:03d}"] = time.monotonic()
                    i, next_probe = i + 1, now + args.interval
                msg = consumer.poll(0.2)
                if msg is not None and not msg.error():
                    cid = codec.deserialize(msg.value())["customer_id"]
                    if cid in produced and cid not in to_score:
                        to_score[cid] = time.monotonic() - produced[cid]
                waiting = [c for c in produced if c not in to_gold]
                # Gold is looked at every 2 s: the reads share the two cores with the jobs measured.
                if waiting and time.monotonic() >= next_look:
                    next_look = time.monotonic() + 2.0
                    rows = (env.spark.read.format("delta").load(c360)
                            .where(F.col("customer_id").isin(waiting) & (F.col("order_count") > 0))
                            .select("customer_id").collect())
                    seen = time.monotonic()
                    for row in rows:
                        to_gold[row.customer_id] = seen - produced[row.customer_id]
        finally:
            consumer.close()
            batches = {q.name: busy_batches(q) for q in queries}
            for q in queries:
                q.stop()
    print(f"freshness with a 1 s trigger, 4 streaming jobs in one local[2] session, {len(produced)} probes:")
    for name, values in (("produce -> gold/c360 row", to_gold), ("produce -> score record", to_score)):
        lat = list(values.values())
        print(f"  {name:26} p50 {percentile(lat, 50):6.1f} s   p95 {percentile(lat, 95):6.1f} s   ({len(lat)}/{len(produced)} arrived)")
    print("  micro-batches that had input, per query (recent progress):")
    for name, seconds in batches.items():
        print(f"    {name:22} {len(seconds):3} batches   p50 {percentile(seconds, 50):5.1f} s   max {max(seconds, default=0):5.1f} s")


def busy_batches(query) -> list[float]:  # noqa: ANN001 - StreamingQuery
    """Durations of the query's recent micro-batches that processed rows (idle polls left out)."""
    return [p["durationMs"]["triggerExecution"] / 1000 for p in query.recentProgress if p.get("numInputRows")]


if __name__ == "__main__":
    main()
