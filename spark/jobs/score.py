"""Score: gold/c360 change data feed -> propensity scores in gold/propensity and, as Confluent-framed
Avro, on dom.propensity.score.v1. Only customers whose gold row changed are scored.

The same batch publishes the gold rows it read (their metrics, as gold committed them) on
dom.customer.gold.v1: the consistency check (``python -m consistency``) compares them with ksqlDB's
view. They come from the change feed, so any change of gold, also one made outside the gold job,
reaches the check.

The model is the latest saved version (``python -m spark.jobs.train``); with none yet, the job
trains one from silver first, waiting until there is enough history for both labels.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from delta.tables import DeltaTable
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.avro.functions import to_avro
from pyspark.sql.streaming import StreamingQuery

from schemas import serde, topics
from spark import model as M
from spark import preflight, status, tables
from spark.jobs import train
from spark.runtime import each_batch, main, with_trigger
from spark.settings import JobSettings
from spark.transforms.features import features

log = logging.getLogger(__name__)
JOB = "score"

PROPENSITY_SCHEMA = T.StructType(
    [
        T.StructField("customer_id", T.StringType(), False),
        T.StructField("score", T.DoubleType(), False),
        T.StructField("model_version", T.StringType(), False),
        T.StructField("behavioural_stage", T.StringType(), False),
        T.StructField("scored_at", T.TimestampType(), False),
    ]
)


def latest_rows(c360_cdf: DataFrame) -> DataFrame:
    """The newest image of every gold row the batch touched."""
    rows = c360_cdf.where(F.col("_change_type").isin("insert", "update_postimage"))
    window = Window.partitionBy("customer_id").orderBy(F.col("_commit_version").desc())
    return rows.withColumn("_rn", F.row_number().over(window)).where("_rn = 1").drop("_rn")


def score_rows(pipeline_model: PipelineModel, version: str, c360_rows: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    scored = M.score(pipeline_model, features(c360_rows, keep), keep)
    return scored.select(
        F.coalesce("customer_id", F.lit("")).alias("customer_id"),
        F.round(F.coalesce("score", F.lit(0.0)), 6).alias("score"),
        F.lit(version).alias("model_version"),
        F.coalesce("behavioural_stage", F.lit("prospect")).alias("behavioural_stage"),
        F.current_timestamp().alias("scored_at"),
        *keep,
    )


def framed_avro(rows: DataFrame, schema_id: int, schema_str: str) -> DataFrame:
    """Kafka rows: key customer_id, value = magic 0 + big-endian schema id + Avro body (spark-avro) of the
    schema's fields, taken from the columns of the same names."""
    header = F.lit(serde.frame(schema_id, b""))
    body = to_avro(F.struct(*[F.col(f["name"]) for f in json.loads(schema_str)["fields"]]), schema_str)
    return rows.select(F.col("customer_id").alias("key"), F.concat(header, body).alias("value"))


def gold_metrics(c360_rows: DataFrame) -> DataFrame:
    """Gold rows -> the columns of dom.customer.gold.v1 (the metrics the consistency check compares).
    Its non-null fields (no null branch in Avro) are non-null in gold too; the coalesce only tells
    spark-avro so (a change feed's columns all read as nullable)."""
    not_null = {"customer_id": F.lit(""), "order_count": F.lit(0).cast("long"), "lifetime_value": F.lit(0.0),
                "activations_delivered": F.lit(0).cast("long"), "activations_failed": F.lit(0).cast("long"),
                "updated_at": F.current_timestamp()}
    fields = [f["name"] for f in json.loads(topics.CUSTOMER_C360.schema_str)["fields"]]
    return c360_rows.select(*[F.coalesce(F.col(n), not_null[n]).alias(n) if n in not_null else F.col(n)
                              for n in fields])


class ScoreBatch:
    def __init__(self, settings: JobSettings, pipeline_model: PipelineModel, version: str, schema_id: int,
                 gold_schema_id: int):
        self.settings = settings
        self.model = pipeline_model
        self.version = version
        self.schema_id = schema_id
        self.gold_schema_id = gold_schema_id
        self.topic = settings.topic(topics.PROPENSITY_SCORE)
        self.gold_topic = settings.topic(topics.CUSTOMER_C360)
        self.path = settings.table("gold", "propensity")
        self.status = status.publisher(settings, JOB)
        self.ledger = tables.Ledger()  # this run's writes: see tables.Ledger

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        # The event time rides through scoring so that the status is measured on the materialised
        # scores (a re-read of the change feed and its window before).
        rows = latest_rows(batch).localCheckpoint()  # scored, and published as they are
        scored = score_rows(self.model, self.version, rows, keep=["updated_at"]).localCheckpoint()
        _, seen = status.observe(scored, "updated_at")
        scores = scored.drop("updated_at")
        # Published first, in one Kafka write (each row names its topic): a score reaches its readers
        # (ksqlDB's segments, the web UI) a MERGE sooner, 1-1.5 s of a small batch (docs/freshness.md).
        # At least once on the topics: a replayed batch, or one whose MERGE fails, re-publishes the same
        # records (keyed, harmless); the table is written exactly once.
        published = [framed_avro(frame, topic_schema, topic.schema_str).withColumn("topic", F.lit(topic.name))
                     for frame, topic_schema, topic in ((scores, self.schema_id, self.topic),
                                                        (gold_metrics(rows), self.gold_schema_id, self.gold_topic))]
        (
            published[0].unionByName(published[1]).write.format("kafka")
            .option("kafka.bootstrap.servers", self.settings.bootstrap_servers)
            .save()
        )
        merge = (
            DeltaTable.forPath(spark, self.path).alias("t")
            .merge(scores.alias("s"), "t.customer_id = s.customer_id")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
        )
        merged = tables.merge_once(spark, self.path, f"{JOB}:propensity", batch_id, merge.execute, self.ledger)
        if merged:
            self.status.committed(JOB, batch_id, [seen])


def model_for_scoring(spark: SparkSession, settings: JobSettings, poll_s: float = 30.0) -> tuple[PipelineModel, str]:
    while True:
        version = M.latest_version(settings.models)
        if version is not None:
            log.info("scoring with model %s", version)
            return M.load(settings.models, version), version
        try:
            train.run(spark, settings)
        except ValueError as exc:  # not enough history yet: wait for the seed / more events
            log.info("no model yet and cannot train one (%s); retrying in %.0fs", exc, poll_s)
            time.sleep(poll_s)


def register(settings: JobSettings, topic: topics.Topic) -> int:
    """The topic's writer schema id; a registry that cannot take it ends the start in one line."""
    url, setting = settings.schema_registry_url, settings.env_name("schema_registry_url")
    try:
        return serde.registry_client(url).register_schema(topic.subject, Schema(topic.schema_str, "AVRO"))
    except SchemaRegistryError as exc:
        raise preflight.DependencyError(f"Schema Registry refused the schema of {topic.name}", url, setting,
                                        f"HTTP {exc.http_status_code}: {exc.error_message}") from None
    except Exception as exc:  # noqa: BLE001 - transport errors of the client's HTTP library
        raise preflight.DependencyError("Schema Registry unreachable", url, setting,
                                        f"{type(exc).__name__}: {exc}") from None


def start(spark: SparkSession, settings: JobSettings) -> list[StreamingQuery]:
    # The contract first, before waiting for gold or a model: ksqlDB's segments read the score topic
    # and the KSQL operator creates them once this subject exists (ksql/060-segments.sql).
    schema_id = register(settings, settings.topic(topics.PROPENSITY_SCORE))
    gold_schema_id = register(settings, settings.topic(topics.CUSTOMER_C360))
    c360 = settings.table("gold", "c360")
    tables.wait_for(spark, c360)
    tables.ensure(spark, settings.table("gold", "propensity"), PROPENSITY_SCHEMA, tables.MERGED)
    pipeline_model, version = model_for_scoring(spark, settings)
    source = spark.readStream.format("delta").option("readChangeFeed", "true").load(c360)
    writer = (
        source.writeStream.queryName("score")
        .foreachBatch(each_batch("score", ScoreBatch(settings, pipeline_model, version, schema_id, gold_schema_id)))
        .option("checkpointLocation", settings.checkpoint(JOB, "propensity"))
    )
    return [with_trigger(writer, settings).start()]


if __name__ == "__main__":
    main(JOB, start, checks=(preflight.storage, preflight.kafka, preflight.schema_registry))
