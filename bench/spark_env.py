"""Shared set-up of the Spark benchmarks: a real broker, the registry double, a local session."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from spark.session import build_session
from tests.support.kafka_broker import start_broker
from tests.support.paths import SPARK_JARS
from tests.support.schema_registry_double import SchemaRegistryDouble


@contextlib.contextmanager
def engines(with_broker: bool = True, extra_conf: dict[str, str] | None = None) -> Iterator[SimpleNamespace]:
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        root = Path(tmp)
        broker = start_broker(root / "kafka") if with_broker else None
        registry = SchemaRegistryDouble().start()
        # The UDF baseline runs in Python workers: the same interpreter (and fastavro) as this one.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        spark = build_session(
            "bench", master="local[2]", jars_dir=SPARK_JARS,
            extra_conf={"spark.ui.enabled": "false", "spark.driver.memory": "3g",
                        "spark.sql.warehouse.dir": str(root / "warehouse"), **(extra_conf or {})},
        )
        spark.sparkContext.setLogLevel("ERROR")
        try:
            yield SimpleNamespace(root=root, broker=broker, registry=registry, spark=spark)
        finally:
            spark.stop()
            registry.stop()
            if broker is not None:
                broker.stop()


def history_and_model(env: SimpleNamespace, trigger: str) -> SimpleNamespace:
    """A small simulated history (200 customers x 30 days) through bronze, silver and gold, a model
    trained on it, and the settings of the live jobs over the same tables and topics with ``trigger``.
    Returns (batch, live) settings."""
    import time

    from seed.simulator import SimConfig, Simulator
    from spark.jobs import bronze, gold, silver, train
    from tests.support import pipeline

    started = time.monotonic()
    batch = pipeline.job_settings(env.broker.bootstrap, env.registry.url, str(env.root / "delta"), pipeline.new_prefix())
    pipeline.create_topics(env.broker, batch)
    sim = Simulator(SimConfig(customers=200, days=30, seed=3))
    pipeline.produce(env.broker, batch, ((e.topic, e.key, e.record) for e in sim.events()))
    for job in (bronze, silver, gold):
        pipeline.run(job, env.spark, batch)
    train.run(env.spark, batch)
    print(f"history loaded and model trained in {time.monotonic() - started:.0f} s", flush=True)
    live = pipeline.job_settings(env.broker.bootstrap, env.registry.url, batch.delta_root, batch.topic_prefix,
                                 TRIGGER_INTERVAL=trigger)
    return SimpleNamespace(batch=batch, live=live)


def seeded(env: SimpleNamespace, customers: int, days: int) -> tuple[object, list, int]:
    """A simulated history of ``customers`` x ``days`` produced under a fresh topic prefix (settings,
    the events, records sent); the caller runs the jobs it needs over it."""
    from seed.simulator import SimConfig, Simulator
    from tests.support import pipeline

    jobs = pipeline.job_settings(env.broker.bootstrap, env.registry.url, str(env.root / "delta"), pipeline.new_prefix())
    pipeline.create_topics(env.broker, jobs)
    events = list(Simulator(SimConfig(customers=customers, days=days)).events())
    sent = pipeline.produce(env.broker, jobs, ((e.topic, e.key, e.record) for e in events))
    return jobs, events, sent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def conf_option(parser: argparse.ArgumentParser) -> None:
    """``--conf KEY=VALUE`` (repeatable): a Spark conf added to the bench's session, static ones too,
    to measure a setting against the same run's defaults before it goes into spark/session.py."""
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        type=lambda kv: tuple(kv.split("=", 1)) if "=" in kv else parser.error(f"--conf {kv}: KEY=VALUE"))


class JvmMeter:
    """CPU seconds of the session's JVM (every thread, from /proc) and the classes Spark's code
    generation compiled, between two readings: what the work cost the cores other queries share."""

    def __init__(self, spark: object) -> None:
        jvm = spark._jvm  # type: ignore[attr-defined]
        self._pid = jvm.java.lang.ProcessHandle.current().pid()
        self._compiles = jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()

    def read(self) -> tuple[float, int]:
        with open(f"/proc/{self._pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(self._compiles.getCount())
