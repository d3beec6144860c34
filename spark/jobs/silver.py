"""Silver: bronze/<entity> (append-only stream) -> silver/{customers,orders,activations}.

One query per entity, each the only writer of its table: in-batch dedup, then an idempotent MERGE
(tagged with query name and batch id, see spark/tables.py), so a replayed batch changes nothing. Silver
tables keep a change data feed for gold.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from spark import preflight, status, tables
from spark.entities import ENTITIES, Entity
from spark.runtime import each_batch, main, with_trigger
from spark.settings import JobSettings
from spark.transforms import silver as T_silver

JOB = "silver"


class SilverBatch:
    def __init__(self, settings: JobSettings, entity: Entity):
        self.entity = entity
        self.path = settings.table("silver", entity.silver)
        self.app_id = f"{JOB}:{entity.silver}"
        self.query = f"silver_{entity.silver}"
        self.status = status.publisher(settings, JOB)
        self.ledger = tables.Ledger()  # this run's writes: see tables.Ledger

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        # Materialised once: the MERGE reads its source twice (to find the touched files, then to
        # write) and the status aggregate once more; each read was a scan of the bronze files and the
        # dedup's shuffle.
        rows, seen = status.observe(T_silver.dedup(T_silver.to_silver_columns(batch), self.entity).localCheckpoint(),
                                    self.entity.event_time)
        spark = batch.sparkSession
        target = DeltaTable.forPath(spark, self.path)
        merge = target.alias("t").merge(rows.alias("s"), T_silver.merge_condition(self.entity))
        newer = T_silver.newer_condition(self.entity)
        if newer is not None:
            merge = merge.whenMatchedUpdateAll(condition=newer)
        merge = merge.whenNotMatchedInsertAll()
        if tables.merge_once(spark, self.path, self.app_id, batch_id, merge.execute, self.ledger):
            self.status.committed(self.query, batch_id, [seen])


def start_entity(spark: SparkSession, settings: JobSettings, entity: Entity) -> StreamingQuery:
    bronze_path = settings.table("bronze", entity.name)
    tables.wait_for(spark, bronze_path)
    bronze_schema = spark.read.format("delta").load(bronze_path).schema
    silver_schema = T_silver.to_silver_columns(spark.createDataFrame([], bronze_schema)).schema
    tables.ensure(spark, settings.table("silver", entity.silver), silver_schema, tables.MERGED)
    # Bronze is append-only but for the erasure job's DELETEs (docs/forget.md): their commits are skipped
    # (silver's rows of that customer are deleted by the same job), not a reason to fail the stream.
    source = spark.readStream.format("delta").option("skipChangeCommits", "true").load(bronze_path)
    name = f"silver_{entity.silver}"
    writer = (
        source.writeStream.queryName(name)
        .foreachBatch(each_batch(name, SilverBatch(settings, entity)))
        .option("checkpointLocation", settings.checkpoint(JOB, entity.silver))
    )
    return with_trigger(writer, settings).start()


def start(spark: SparkSession, settings: JobSettings) -> list[StreamingQuery]:
    return [start_entity(spark, settings, entity) for entity in ENTITIES]


if __name__ == "__main__":
    main(JOB, start, checks=(preflight.storage,))
