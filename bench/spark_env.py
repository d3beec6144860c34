"""Shared set-up of the Spark benchmarks: a real broker, the registry double, a local session."""

from __future__ import annotations

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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
