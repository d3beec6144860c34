"""Bronze: split Confluent framing and decode Avro natively with spark-avro ``from_avro``.

The writer schema is chosen by the schema id in each record's 5-byte header. For every
(topic, schema id) seen, one ``from_avro`` branch decodes with that writer schema and resolves to
the topic's contract schema (``avroSchema`` option = reader schema), so all branches share one
type and old and new versions land in the same columns. No Python on the hot path.
Undecodable records come out of :func:`quarantine` with the original bytes and a reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.avro.functions import from_avro

KAFKA_META = ["key", "topic", "partition", "offset", "kafka_timestamp", "schema_id", "ingest_time"]

REASON_TRUNCATED = "truncated: fewer than 5 bytes"
REASON_MAGIC = "bad magic byte"
REASON_UNKNOWN_ID = "unknown schema id"
REASON_CORRUPT = "corrupt Avro body"
REASON_NULL = "null value"


def frame(raw: DataFrame) -> DataFrame:
    """Kafka source rows -> key, value, metadata, magic, schema_id, body. Never fails on bad bytes."""
    value = F.col("value")
    long_enough = F.length(value) >= 5
    return raw.select(
        F.col("key").cast("string").alias("key"),
        value.alias("value"),
        F.col("key").alias("key_bytes"),
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.when(long_enough, F.conv(F.hex(F.substring(value, 1, 1)), 16, 10).cast("int")).alias("magic"),
        F.when(long_enough, F.conv(F.hex(F.substring(value, 2, 4)), 16, 10).cast("int")).alias("schema_id"),
        F.when(long_enough, F.expr("substring(value, 6, length(value) - 5)")).alias("body"),
        F.current_timestamp().alias("ingest_time"),
    )


def decode_topic(
    framed: DataFrame,
    topic: str,
    reader_schema: str,
    writer_schemas: Mapping[int, str],
) -> DataFrame:
    """Rows of ``topic`` with a ``decoded`` struct (reader schema) or null, plus ``reason`` when null."""
    rows = framed.where(F.col("topic") == topic)
    # A typed null: with no usable writer schema yet the column still has the contract's struct type.
    decoded: Column = from_avro(F.lit(None).cast("binary"), reader_schema)
    if writer_schemas:
        branches = None
        for schema_id, writer in sorted(writer_schemas.items()):
            expr = from_avro(F.col("body"), writer, {"mode": "PERMISSIVE", "avroSchema": reader_schema})
            cond = F.col("schema_id") == F.lit(schema_id)
            branches = F.when(cond, expr) if branches is None else branches.when(cond, expr)
        # Only well-framed bodies reach the decoder.
        decoded = F.when(F.col("magic") == 0, branches)
    return explain(rows.withColumn("decoded", decoded), reader_schema, writer_schemas)


def explain(rows: DataFrame, reader_schema: str, writer_schemas: Mapping[int, str]) -> DataFrame:
    """Add ``reason``: why a row's ``decoded`` cannot be used (null when it can)."""
    known = F.col("schema_id").isin(list(writer_schemas)) if writer_schemas else F.lit(False)
    # Spark 4's PERMISSIVE from_avro gives a struct of nulls (not a null) for a body it cannot read;
    # a real record never has a null in a field the contract declares non-nullable.
    corrupt = F.col("decoded").isNull()
    for name in required_fields(reader_schema):
        corrupt = corrupt | F.col(f"decoded.{name}").isNull()
    reason = (
        F.when(F.col("value").isNull(), F.lit(REASON_NULL))
        .when(F.col("magic").isNull(), F.lit(REASON_TRUNCATED))
        .when(F.col("magic") != 0, F.concat(F.lit(REASON_MAGIC + " 0x"), F.lower(F.hex(F.substring("value", 1, 1)))))
        .when(~known, F.concat(F.lit(REASON_UNKNOWN_ID + " "), F.col("schema_id").cast("string")))
        .when(corrupt, F.lit(REASON_CORRUPT))
    )
    return rows.withColumn("reason", reason)


def required_fields(schema_str: str) -> list[str]:
    """Top-level fields of an Avro record schema that cannot be null."""
    fields = json.loads(schema_str)["fields"]

    def nullable(t: object) -> bool:
        return t == "null" or (isinstance(t, list) and "null" in t)

    return [f["name"] for f in fields if not nullable(f["type"])]


def good_rows(decoded: DataFrame) -> DataFrame:
    """Decoded rows flattened: Kafka metadata + every contract field as a column."""
    return decoded.where(F.col("reason").isNull()).select(*KAFKA_META, "decoded.*")


def quarantine(decoded: DataFrame) -> DataFrame:
    """Rows that could not be decoded, with the original bytes and why."""
    return decoded.where(F.col("reason").isNotNull()).select(
        "topic", "partition", "offset", "kafka_timestamp", "key_bytes", "value", "schema_id", "reason", "ingest_time"
    )


def dead_letters(quarantined: DataFrame) -> DataFrame:
    """Quarantine rows shaped for the Kafka sink: original key and value, reason and origin in headers."""
    return quarantined.select(
        F.col("key_bytes").alias("key"),
        F.col("value"),
        F.array(
            F.struct(F.lit("reason").alias("key"), F.encode(F.col("reason"), "UTF-8").alias("value")),
            F.struct(F.lit("source.topic").alias("key"), F.encode(F.col("topic"), "UTF-8").alias("value")),
            F.struct(F.lit("source.partition").alias("key"), F.encode(F.col("partition").cast("string"), "UTF-8").alias("value")),
            F.struct(F.lit("source.offset").alias("key"), F.encode(F.col("offset").cast("string"), "UTF-8").alias("value")),
        ).alias("headers"),
    )
