"""Delta table plumbing on real Delta: properties on create and on tables an older release made,
auto compaction keeping a streamed table's file count bounded, the batch token on commits."""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import types as T

from spark import tables

SCHEMA = T.StructType([T.StructField("id", T.LongType()), T.StructField("v", T.StringType())])


def properties(spark, path: str) -> dict:  # noqa: ANN001
    return DeltaTable.forPath(spark, path).detail().select("properties").first()[0]


def num_files(spark, path: str) -> int:  # noqa: ANN001
    return DeltaTable.forPath(spark, path).detail().select("numFiles").first()[0]


def test_ensure_creates_with_properties_and_adds_missing_ones_to_an_old_table(spark, delta_root):
    fresh, old = str(delta_root / "fresh"), str(delta_root / "old")
    tables.ensure(spark, fresh, SCHEMA, tables.MERGED)
    assert {k: properties(spark, fresh).get(k) for k in tables.MERGED} == tables.MERGED

    tables.ensure(spark, old, SCHEMA)  # as a release without these properties made it
    spark.createDataFrame([(1, "a")], SCHEMA).write.format("delta").mode("append").save(old)
    assert "delta.autoOptimize.autoCompact" not in properties(spark, old)
    tables.ensure(spark, old, SCHEMA, tables.MERGED)
    assert {k: properties(spark, old).get(k) for k in tables.MERGED} == tables.MERGED
    assert spark.read.format("delta").load(old).count() == 1


def test_auto_compaction_folds_the_small_files_of_appended_batches(spark, delta_root):
    path = str(delta_root / "appended")
    tables.ensure(spark, path, SCHEMA, tables.APPENDED)
    # The product's threshold is Delta's default (50 small files); 4 keeps the test short.
    spark.conf.set("spark.databricks.delta.autoCompact.minNumFiles", "4")
    try:
        counts = []
        for batch_id in range(6):
            df = spark.createDataFrame([(batch_id, "x")], SCHEMA).coalesce(1)
            assert tables.append_once(df, path, "test:appended", batch_id)
            counts.append(num_files(spark, path))
    finally:
        spark.conf.unset("spark.databricks.delta.autoCompact.minNumFiles")
    assert counts[:3] == [1, 2, 3]  # below the threshold every batch adds a file
    assert max(counts) < 4 and counts[-1] < 6, counts
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == list(range(6))
    operations = [r.operation for r in DeltaTable.forPath(spark, path).history().collect()]
    assert "OPTIMIZE" in operations
    # A replayed batch is still recognised after compaction commits came in between.
    assert not tables.append_once(spark.createDataFrame([(5, "x")], SCHEMA), path, "test:appended", 5)
