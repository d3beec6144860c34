"""Bronze: the three source topics -> bronze/<entity> Delta tables, undecodable records ->
quarantine table + dead-letter topic. One query, foreachBatch, idempotent writes per table."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.avro.functions import from_avro
from pyspark.sql.streaming import StreamingQuery

from schemas import topics
from schemas.serde import registry_client
from spark import preflight, status, tables
from spark.entities import ENTITIES, Entity
from spark.registry import WriterSchemas
from spark.runtime import each_batch, main, with_trigger
from spark.settings import JobSettings
from spark.transforms import bronze as T_bronze

log = logging.getLogger(__name__)
JOB = "bronze"

KAFKA_META_SCHEMA = [
    T.StructField("key", T.StringType()),
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("kafka_timestamp", T.TimestampType()),
    T.StructField("schema_id", T.IntegerType()),
    T.StructField("ingest_time", T.TimestampType()),
]
QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("kafka_timestamp", T.TimestampType()),
        T.StructField("key_bytes", T.BinaryType()),
        T.StructField("value", T.BinaryType()),
        T.StructField("schema_id", T.IntegerType()),
        T.StructField("reason", T.StringType()),
        T.StructField("ingest_time", T.TimestampType()),
    ]
)


def contract_struct(spark: SparkSession, schema_str: str) -> T.StructType:
    """The Spark type spark-avro gives a contract schema."""
    probe = spark.range(0).select(from_avro(F.lit(None).cast("binary"), schema_str).alias("d"))
    return probe.schema["d"].dataType  # type: ignore[return-value]


def nullable(data_type: T.DataType) -> T.DataType:
    """The same type with every level nullable: Delta rejects NOT NULL nested in arrays, and the Avro
    contract, not the table, is what enforces presence in bronze."""
    if isinstance(data_type, T.StructType):
        return T.StructType([T.StructField(f.name, nullable(f.dataType), True) for f in data_type.fields])
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(nullable(data_type.elementType), True)
    if isinstance(data_type, T.MapType):
        return T.MapType(data_type.keyType, nullable(data_type.valueType), True)
    return data_type


def ensure_tables(spark: SparkSession, settings: JobSettings) -> None:
    for entity in ENTITIES:
        fields = nullable(contract_struct(spark, entity.topic.schema_str)).fields  # type: ignore[attr-defined]
        tables.ensure(spark, settings.table("bronze", entity.name), T.StructType(KAFKA_META_SCHEMA + list(fields)),
                      tables.APPENDED)
    tables.ensure(spark, settings.table("quarantine", "records"), QUARANTINE_SCHEMA, tables.APPENDED)


Decoder = Callable[[DataFrame, str, str, Mapping[int, str]], DataFrame]


class BronzeBatch:
    """The foreachBatch body: decode, write good rows per entity, quarantine and dead-letter the rest."""

    def __init__(self, settings: JobSettings, writers: WriterSchemas, app_id: str = JOB,
                 decode: Decoder = T_bronze.decode_topic):
        self.settings = settings
        self.writers = writers
        self.app_id = app_id
        # The decode step is a parameter so bench/bench_bronze.py can run this same job with a
        # raw copy (the ceiling) and a Python UDF (the earlier approach) in its place.
        self.decode = decode
        self.status = status.publisher(settings, JOB)
        self.ledger = tables.Ledger()

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        framed = T_bronze.frame(batch).persist()
        try:
            self._process(framed, batch_id)
        finally:
            framed.unpersist()

    def _process(self, framed: DataFrame, batch_id: int) -> None:
        # One small aggregate says which topics and schema ids this batch holds: topics with no
        # records cost no decode and no Delta commit.
        seen = framed.groupBy("topic", "magic", "schema_id").count().collect()
        present = {r.topic for r in seen}
        decoded = {}
        for entity in ENTITIES:
            topic = self.settings.topic(entity.topic)
            if topic.name not in present:
                continue
            ids = {r.schema_id for r in seen if r.topic == topic.name and r.magic == 0}
            # Not cached: decoding again for each use is cheaper than caching the decoded nested rows
            # (measured by bench/bench_bronze.py).
            decoded[entity] = self.decode(framed, topic.name, topic.schema_str, self.writers.resolve(topic, ids))
        if not decoded:
            return
        figures = self._figures(decoded)
        written = []  # the figures of each table this call appended to
        for entity, rows in decoded.items():
            if tables.append_once(T_bronze.good_rows(rows), self.settings.table("bronze", entity.name),
                                  f"{self.app_id}:{entity.name}", batch_id, ledger=self.ledger):
                written.append(figures[entity.name][0])
        bad = sum(figures[e.name][1] for e in decoded)
        if bad:
            quarantined = reduce(DataFrame.unionByName, [T_bronze.quarantine(rows) for rows in decoded.values()])
            self._quarantine(quarantined.persist(), batch_id, bad)
        if written:  # after every write of the batch succeeded
            self.status.publish(JOB, batch_id, status.combine(written))

    @staticmethod
    def _figures(decoded: Mapping[Entity, DataFrame]) -> dict[str, tuple[status.Measured, int]]:
        """Per entity, in ONE Spark job before the writes: the status figures of its good rows and how
        many rows go to quarantine (it used to be a count of the bad rows and an aggregate per table
        after the writes: three jobs more for a batch of two topics)."""
        parts = []
        for entity, rows in decoded.items():
            good = F.col("reason").isNull()
            # (a decoder without the contract's fields, bench/bench_bronze.py's raw copy, has no figures)
            fields = set(rows.schema["decoded"].dataType.fieldNames())  # type: ignore[attr-defined]
            newest = F.col(f"decoded.{entity.event_time}") if entity.event_time in fields else None
            customer = F.col("decoded.customer_id") if "customer_id" in fields else None
            parts.append(rows.agg(
                F.lit(entity.name).alias("entity"),
                *status.aggregates(newest, customer, where=good),
                F.count(F.when(~good, F.lit(1))).alias("bad"),
            ))
        return {r.entity: (status.from_row(r), int(r.bad)) for r in reduce(DataFrame.unionByName, parts).collect()}

    def _quarantine(self, bad: DataFrame, batch_id: int, count: int) -> None:
        try:
            tables.append_once(bad, self.settings.table("quarantine", "records"), f"{self.app_id}:quarantine", batch_id,
                               ledger=self.ledger)
            # At least once: a replayed batch may re-send its dead letters (the table write is exactly once).
            (
                T_bronze.dead_letters(bad).write.format("kafka")
                .option("kafka.bootstrap.servers", self.settings.bootstrap_servers)
                .option("topic", self.settings.topic(topics.DEAD_LETTER).name)
                .save()
            )
            log.warning("batch %s: %d records quarantined", batch_id, count)
        finally:
            bad.unpersist()


def start(spark: SparkSession, settings: JobSettings, decode: Decoder = T_bronze.decode_topic) -> list[StreamingQuery]:
    ensure_tables(spark, settings)
    writers = WriterSchemas(registry_client(settings.schema_registry_url), settings.schema_registry_url,
                            settings.env_name("schema_registry_url"))
    for entity in ENTITIES:
        writers.preload(settings.topic(entity.topic))
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .option("subscribe", ",".join(settings.topic(e.topic).name for e in ENTITIES))
        .option("startingOffsets", settings.starting_offsets)
        .option("maxOffsetsPerTrigger", settings.max_offsets_per_trigger)
        .option("failOnDataLoss", "false")
        .load()
    )
    writer = (
        source.writeStream.queryName("bronze")
        .foreachBatch(each_batch("bronze", BronzeBatch(settings, writers, decode=decode)))
        .option("checkpointLocation", settings.checkpoint(JOB, "sources"))
    )
    return [with_trigger(writer, settings).start()]


if __name__ == "__main__":
    main(JOB, start, checks=(preflight.storage, preflight.kafka, preflight.schema_registry))
