"""The one registry of topic names. Every component (seed, Spark, ksqlDB files, web UI, chart) takes
topic names from here; tests check the others against it.

All customer-scoped topics are keyed by ``customer_id`` (UTF-8 string) so ksqlDB joins need no
repartition and per-customer order is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

AVRO_DIR = Path(__file__).resolve().parent / "avro"
JSON_DIR = Path(__file__).resolve().parent / "json"


@dataclass(frozen=True)
class Topic:
    name: str
    value_format: str  # "avro" (Confluent framing) | "json" | "bytes"
    key_format: str  # "string" (UTF-8: the customer_id; the query name for PIPELINE_STATUS) | "bytes"
    producers: tuple[str, ...]
    schema_file: str | None = None  # Avro contract under schemas/avro/, for value_format == "avro"
    partitions: int = 3
    json_schema_file: str | None = None  # JSON Schema contract under schemas/json/, for value_format == "json"
    config: tuple[tuple[str, str], ...] = ()  # topic settings the chart's topics Job sets (rpk -c key=value)

    @property
    def subject(self) -> str:
        """Schema Registry subject under the default TopicNameStrategy."""
        return f"{self.name}-value"

    @property
    def schema_str(self) -> str:
        if self.schema_file is None:
            raise ValueError(f"topic {self.name} has no Avro schema")
        return load_schema_str(self.schema_file)


# The raw event topics are append-only and carry personal fields (names, e-mail, phone; the orders and
# activations the customer id): a forgotten customer's data stays in them until their segments expire,
# at most this long after the record was written (docs/forget.md). Stated here, set by the chart.
RAW_RETENTION_MS = 7 * 24 * 3600 * 1000
RAW_CONFIG = (("retention.ms", str(RAW_RETENTION_MS)),)
CUSTOMER_PROFILE = Topic(
    "dom.customer.profile.upsert.v1", "avro", "string", ("seed", "webapp", "forget"), "customer_profile_upsert.avsc",
    config=RAW_CONFIG,
)
ORDER_PLACED = Topic("dom.order.placed.v1", "avro", "string", ("seed", "webapp"), "order_placed.avsc",
                     config=RAW_CONFIG)
ACTIVATION_STATUS = Topic(
    "dom.activation.delivery.status.v1", "avro", "string", ("seed", "webapp"), "activation_delivery_status.avsc",
    config=RAW_CONFIG,
)
# ksqlDB's JSON outputs have no registry subject: their contracts are JSON Schemas, checked against
# what the ksql/ topology emits by tests/unit/test_ksql_json_contracts.py.
ORDER_ENRICHED = Topic(
    "dom.customer.order.enriched.v1", "json", "string", ("ksqldb",), json_schema_file="customer_order_enriched.json"
)
CUSTOMER_CONSOLIDATED = Topic(
    "dom.customer.consolidated.v1", "json", "string", ("ksqldb",), json_schema_file="customer_consolidated.json"
)
SEGMENT_MATERIALIZED = Topic(
    "dom.segment.materialized.v1", "avro", "string", ("ksqldb",), "segment_materialized.avsc"
)
PROPENSITY_SCORE = Topic(
    "dom.propensity.score.v1", "avro", "string", ("spark-score",), "propensity_score.avsc"
)
# Gold C360's metrics per customer as gold committed them (post-images of its change data feed),
# published by the score job, which reads that feed: the consistency check reads gold from here.
CUSTOMER_C360 = Topic("dom.customer.gold.v1", "avro", "string", ("spark-score",), "customer_c360.avsc")
# The consistency check's report (python -m consistency), keyed by "consistency": the newest is current.
CONSISTENCY = Topic(
    "dom.pipeline.consistency.v1", "avro", "string", ("consistency",), "consistency_report.avsc", partitions=1,
)
CONSISTENCY_KEY = "consistency"  # the report topic's one key: its writer, the feeder and verify use this
# Requests to forget a customer (python -m forget, make forget), keyed by customer_id: the web UI's feeder
# erases the customer from Redis, spark/jobs/erasure.py from Delta (docs/forget.md).
# Compacted: the newest request per customer stays for good (a customer id, no personal field), so a cache
# rebuilt from the topics later still knows whom to leave out, however old the request.
CUSTOMER_ERASURE = Topic(
    "dom.customer.erasure.v1", "avro", "string", ("forget", "webapp"), "customer_erasure.avsc",
    config=(("cleanup.policy", "compact"),),
)
# Undecodable source records: original key and value bytes, the reason in headers.
DEAD_LETTER = Topic("dom.pipeline.deadletter.v1", "bytes", "bytes", ("spark-bronze",))
# Per committed micro-batch of every Spark streaming query (spark/status.py), keyed by the query name
# (not a customer id), one partition: compacted, it keeps each query's newest batch (the web UI's
# feeder reads it for the pipeline-health panel; no UI reads Delta).
PIPELINE_STATUS = Topic(
    "dom.pipeline.batch.status.v1", "avro", "string",
    ("spark-bronze", "spark-silver", "spark-gold", "spark-score"), "pipeline_batch_status.avsc", partitions=1,
)

ALL_TOPICS: tuple[Topic, ...] = (
    CUSTOMER_PROFILE,
    ORDER_PLACED,
    ACTIVATION_STATUS,
    ORDER_ENRICHED,
    CUSTOMER_CONSOLIDATED,
    SEGMENT_MATERIALIZED,
    PROPENSITY_SCORE,
    CUSTOMER_C360,
    DEAD_LETTER,
    PIPELINE_STATUS,
    CONSISTENCY,
    CUSTOMER_ERASURE,
)
# The raw event topics the seed and the web UI publish and Spark bronze ingests.
SOURCE_TOPICS: tuple[Topic, ...] = (CUSTOMER_PROFILE, ORDER_PLACED, ACTIVATION_STATUS)
# What ksqlDB reads that other components write: the raw events and the Spark score job's scores
# (ksql/060-segments.sql joins them). They must exist before the KSQL operator creates what reads them.
KSQL_INPUT_TOPICS: tuple[Topic, ...] = (*SOURCE_TOPICS, PROPENSITY_SCORE)
BY_NAME: dict[str, Topic] = {t.name: t for t in ALL_TOPICS}


def prefixed(contract: Topic, prefix: str) -> Topic:
    """The contract topic under a deployment's prefix (tests and side-by-side demos use one; "": itself)."""
    return replace(contract, name=prefix + contract.name) if prefix else contract


def topic(name: str) -> Topic:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {', '.join(BY_NAME)}") from None


@cache
def load_schema_str(schema_file: str) -> str:
    """The schema as a compact canonical JSON string (what is registered)."""
    return json.dumps(json.loads((AVRO_DIR / schema_file).read_text()), separators=(",", ":"))


@cache
def load_json_schema(json_schema_file: str) -> dict:
    """A JSON Schema contract of schemas/json/ (cached: callers must not mutate it)."""
    return json.loads((JSON_DIR / json_schema_file).read_text())
