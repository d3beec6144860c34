from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CACHE = REPO / ".cache"
SPARK_JARS = CACHE / "jars" / "spark"
KAFKA_JARS = CACHE / "jars" / "kafka"
OUTPUT = REPO / "test-output"  # screenshots, logs worth keeping after a run
