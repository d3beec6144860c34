"""Seed throughput: the seed through the Kafka transport vs a raw confluent-kafka producer (the ceiling).

Measured in one run, on a real Apache Kafka broker (started here from the test jars unless
BENCH_KAFKA_BOOTSTRAP points at one) and the Schema Registry test double:

  seed (kafka transport)  python -m seed's own path: simulate -> TopicSerde (Avro, Confluent frame) ->
                          KafkaPublisher (idempotent, acks=all, delivery reports counted), events/s
  raw producer            the same pre-serialized bytes through a bare Producer with the same
                          settings (enable.idempotence, acks=all, linger, compression, the murmur2
                          partitioner), events/s
  ratio                   seed / raw
  fastavro encode         schemaless_writer over the same records, records/s (the encoder's ceiling)
and, to explain the ratio, the simulator alone and TopicSerde.serialize alone. Each figure is the
best of --repeat runs (the machine may be shared).

Run: python -m bench.bench_seed [--customers N] [--days D]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import fastavro
from confluent_kafka import Producer

from schemas import serde
from schemas.partitioning import LIBRDKAFKA_PARTITIONER
from schemas.topics import SOURCE_TOPICS
from seed.cli import Run
from seed.publish import KafkaPublisher
from seed.settings import SeedSettings
from seed.simulator import SimConfig, Simulator


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench(bootstrap: str, registry_url: str, customers: int, days: int, repeat: int = 2) -> dict[str, float]:
    """Each figure is the best of ``repeat`` runs; the seed and raw runs alternate (same broker state)."""
    settings = SeedSettings(customers=customers, days=days, seed=1, transport="kafka",
                            bootstrap_servers=bootstrap, schema_registry_url=registry_url,
                            request_timeout_s=30, log_level="WARNING")
    cfg = SimConfig.from_settings(settings)

    def timed(fn) -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best

    # Simulator alone.
    evs = list(Simulator(cfg).events())
    n = len(evs)
    sim_s = timed(lambda: sum(1 for _ in Simulator(cfg).events()))

    # TopicSerde alone (what the publisher does per record), and the frames for the raw producer.
    client = serde.registry_client(registry_url)
    serdes = {t.name: serde.TopicSerde(client, t) for t in SOURCE_TOPICS}
    for t in SOURCE_TOPICS:  # register outside the timing
        first = next(e for e in evs if e.topic is t)
        serdes[t.name].serialize(first.record)
    frames = [(e.topic.name, e.key.encode(), serdes[e.topic.name].serialize(e.record)) for e in evs]
    serde_s = timed(lambda: [serdes[e.topic.name].serialize(e.record) for e in evs])

    # fastavro encode alone.
    parsed = {t.name: fastavro.parse_schema(json.loads(t.schema_str)) for t in SOURCE_TOPICS}

    def encode_all() -> None:
        for e in evs:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed[e.topic.name], e.record)

    fastavro_s = timed(encode_all)

    # Warm the broker (leaders, producer ids) so neither measured run pays for it.
    warm = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                     "partitioner": LIBRDKAFKA_PARTITIONER})
    for topic_name, key, value in frames[:2000]:
        warm.produce(topic_name, value=value, key=key)
    warm.flush(60)

    def seed_run() -> float:
        """The seed, end to end, through the Kafka transport (the CLI's own Run, no progress output)."""
        with open(os.devnull, "w") as devnull:
            run = Run(settings, stderr=devnull, stdout=devnull, progress=False)
            t0 = time.perf_counter()
            code = run.publish()
            elapsed = time.perf_counter() - t0
        if code != 0 or run.sent != n:
            raise SystemExit(f"bench: the seed run failed (exit {code}, {run.sent}/{n} acknowledged)")
        return elapsed

    probe = KafkaPublisher(settings.publisher)
    conf = dict(probe.producer_conf)
    probe.close()

    def raw_run() -> float:
        """The same pre-serialized bytes through a bare Producer with KafkaPublisher's settings."""
        producer = Producer(conf)
        counts = {"acked": 0, "failed": 0}

        def on_delivery(err, _msg) -> None:
            counts["acked" if err is None else "failed"] += 1

        t0 = time.perf_counter()
        for i, (topic_name, key, value) in enumerate(frames):
            while True:
                try:
                    producer.produce(topic_name, value=value, key=key, on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            if i % 1000 == 999:
                producer.poll(0)
        producer.flush(120)
        elapsed = time.perf_counter() - t0
        if counts["acked"] != n:
            raise SystemExit(f"bench: raw producer acknowledged {counts['acked']}/{n} ({counts['failed']} failed)")
        return elapsed

    seed_s = raw_s = float("inf")
    for _ in range(repeat):
        seed_s = min(seed_s, seed_run())
        raw_s = min(raw_s, raw_run())

    return {
        "events": n,
        "seed_eps": _rate(n, seed_s),
        "raw_eps": _rate(n, raw_s),
        "ratio": _rate(n, seed_s) / _rate(n, raw_s),
        "fastavro_rps": _rate(n, fastavro_s),
        "serde_rps": _rate(n, serde_s),
        "sim_eps": _rate(n, sim_s),
        "bytes": sum(len(v) for _, _, v in frames),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_seed", description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--repeat", type=int, default=2, help="best of N runs per figure (default 2)")
    args = p.parse_args(argv)

    from tests.support.schema_registry_double import SchemaRegistryDouble

    registry = SchemaRegistryDouble().start()
    broker = None
    bootstrap = os.environ.get("BENCH_KAFKA_BOOTSTRAP", "")
    workdir = tempfile.TemporaryDirectory(prefix="bench-seed-")
    try:
        if not bootstrap:
            from tests.support.kafka_broker import start_broker

            print("starting a Kafka broker (KRaft) from .cache/jars/kafka ...", file=sys.stderr)
            broker = start_broker(Path(workdir.name))
            bootstrap = broker.bootstrap
            broker.create_topics([t.name for t in SOURCE_TOPICS], partitions=3)
        r = bench(bootstrap, registry.url, args.customers, args.days, max(1, args.repeat))
    finally:
        if broker is not None:
            broker.stop()
        registry.stop()
        workdir.cleanup()

    print(f"seed bench: {r['events']:,} events ({args.customers} customers x {args.days} days), "
          f"{r['bytes'] / r['events']:.0f} B/value avg, broker {'external' if broker is None else 'local KRaft'}")
    print(f"  seed via kafka transport  {r['seed_eps']:>12,.0f} events/s  (simulate + serialize + publish, acked)")
    print(f"  raw producer (ceiling)    {r['raw_eps']:>12,.0f} events/s  (same pre-serialized bytes and settings)")
    print(f"  ratio seed / raw          {r['ratio']:>12.3f}")
    print(f"  fastavro encode           {r['fastavro_rps']:>12,.0f} records/s")
    print(f"  (TopicSerde.serialize     {r['serde_rps']:>12,.0f} records/s; simulator alone "
          f"{r['sim_eps']:,.0f} events/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
