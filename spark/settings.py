"""Settings of the Spark jobs: the same environment in a SparkApplication CR and on a laptop."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from common import settings as s
from schemas.topics import Topic, prefixed


def _trigger(raw: str) -> str:
    """A processing-time trigger like '10 seconds'; 'once' / 'available-now' for a drain-and-stop run."""
    if raw in {"once", "available-now"}:
        return raw
    amount, _, unit = raw.partition(" ")
    if not amount.replace(".", "", 1).isdigit() or unit.rstrip("s") not in {"second", "minute", "millisecond"}:
        raise ValueError("not like '10 seconds'")
    return raw


# What SparkContext accepts; anything else fails inside the JVM with a page of stack trace.
_MASTER = re.compile(r"local(\[(\d+|\*)(,\s*\d+)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]|yarn|"
                     r"(spark|mesos)://[^\s/]+(:\d+)?(,[^\s/]+(:\d+)?)*|k8s://\S+")


def _master(raw: str) -> str:
    if raw and not _MASTER.fullmatch(raw):
        raise ValueError("not a Spark master URL")
    return raw


@dataclass(frozen=True)
class JobSettings:
    bootstrap_servers: str = s.env(
        "KAFKA_BOOTSTRAP_SERVERS", "redpanda.redpanda.svc.cluster.local:9093", s.bootstrap_servers, "host:port[,host:port]"
    )
    schema_registry_url: str = s.env(
        "SCHEMA_REGISTRY_URL", "http://redpanda.redpanda.svc.cluster.local:8081", s.registry_url, "an http(s) URL"
    )
    delta_root: str = s.env("DELTA_ROOT", "/data/delta", str, "a directory path or URI")
    checkpoint_root: str = s.env("CHECKPOINT_ROOT", "", str, "a directory path (default: DELTA_ROOT/_checkpoints)")
    trigger: str = s.env("TRIGGER_INTERVAL", "10 seconds", _trigger, "like '10 seconds', or once / available-now")
    starting_offsets: str = s.env("STARTING_OFFSETS", "earliest", s.choice("earliest", "latest"), "earliest or latest")
    max_offsets_per_trigger: int = s.env(
        "MAX_OFFSETS_PER_TRIGGER", 50000, s.positive_int, "a positive integer"
    )
    topic_prefix: str = s.env("TOPIC_PREFIX", "", str, "a prefix for every topic name (empty in the product)")
    label_window_days: int = s.env("LABEL_WINDOW_DAYS", 14, s.positive_int, "a positive number of days")
    model_dir: str = s.env("MODEL_DIR", "", str, "a directory path (default: DELTA_ROOT/_models/propensity)")
    jars_dir: str = s.env("SPARK_JARS_DIR", "", str, "a directory of jars (empty in the image: jars are baked in)")
    spark_master: str = s.env(
        "SPARK_MASTER", "", _master, "a Spark master URL like local[2] or spark://host:7077 (empty: spark-submit decides)"
    )
    erasure_reader_wait_s: float = s.env(
        "ERASURE_READER_WAIT_S", 120.0, s.non_negative_float,
        "seconds >= 0 (how long the erasure job waits for the streaming readers to read past its purge "
        "before it vacuums; a table whose readers are behind is vacuumed by the next run)",
    )
    startup_wait_s: float = s.env(
        "STARTUP_WAIT_S", 30.0, s.non_negative_float,
        "seconds >= 0 (how long a job waits at start for Kafka / the Schema Registry to answer)",
    )
    log_level: str = s.env("LOG_LEVEL", "INFO", s.choice("DEBUG", "INFO", "WARNING", "ERROR"), "a log level")

    @property
    def checkpoints(self) -> str:
        return self.checkpoint_root or f"{self.delta_root.rstrip('/')}/_checkpoints"

    @property
    def models(self) -> str:
        return self.model_dir or f"{self.delta_root.rstrip('/')}/_models/propensity"

    def topic(self, contract: Topic) -> Topic:
        """The contract topic under this deployment's prefix (tests and side-by-side demos use one)."""
        return prefixed(contract, self.topic_prefix)

    def table(self, layer: str, name: str) -> str:
        return f"{self.delta_root.rstrip('/')}/{layer}/{name}"

    def checkpoint(self, job: str, query: str) -> str:
        return f"{self.checkpoints.rstrip('/')}/{job}/{query}"

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable behind a field (error messages name the setting to fix)."""
        return {f.name: f.metadata["env"].name for f in dataclasses.fields(JobSettings)}[field]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobSettings:
        return s.load(cls, os.environ if environ is None else environ)
