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


def test_ensure_creates_with_properties_and_brings_an_old_table_up_to_date(spark, delta_root):
    fresh, old = str(delta_root / "fresh"), str(delta_root / "old")
    tables.ensure(spark, fresh, SCHEMA, tables.MERGED)
    assert {k: properties(spark, fresh).get(k) for k in tables.MERGED} == tables.MERGED

    narrow = T.StructType(SCHEMA.fields[:1])
    tables.ensure(spark, old, narrow)  # as a release without the properties and column `v` made it
    spark.createDataFrame([(1,)], narrow).write.format("delta").mode("append").save(old)
    spark.sql(f"ALTER TABLE delta.`{old}` SET TBLPROPERTIES ('delta.autoOptimize.autoCompact' = 'false')")
    tables.ensure(spark, old, SCHEMA, tables.MERGED)
    got = properties(spark, old)
    assert got["delta.enableChangeDataFeed"] == "true" and got["delta.enableDeletionVectors"] == "true"
    assert got["delta.autoOptimize.autoCompact"] == "false"  # an operator's choice stays
    assert [tuple(r) for r in spark.read.format("delta").load(old).collect()] == [(1, None)]


def test_auto_compaction_keeps_the_file_count_bounded_and_downstream_reads_exact(spark, delta_root):
    path = str(delta_root / "appended")
    tables.ensure(spark, path, SCHEMA, tables.MERGED)
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
    history = DeltaTable.forPath(spark, path).history().collect()
    assert counts[:3] == [1, 2, 3] and counts[3] == 1, counts  # the 4th small file set compaction off
    assert max(counts) < 4, counts
    assert [r.operation for r in history].count("OPTIMIZE") >= 1
    # Batch 3's append is followed by the compaction commit; a replay of it is still recognised.
    assert not tables.append_once(spark.createDataFrame([(3, "x")], SCHEMA), path, "test:appended", 3)

    # Downstream: a stream and the change feed see each row once, none from the compaction.
    seen: list[int] = []
    query = (spark.readStream.format("delta").load(path).writeStream
             .foreachBatch(lambda batch, _id: seen.extend(r.id for r in batch.collect()))
             .option("checkpointLocation", str(delta_root / "_chk")).trigger(availableNow=True).start())
    query.awaitTermination()
    assert sorted(seen) == list(range(6))
    feed = spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", 0).load(path)
    assert sorted((r.id, r._change_type) for r in feed.collect()) == [(i, "insert") for i in range(6)]

    spark.sql(f"VACUUM delta.`{path}`")  # the README's housekeeping statement runs on such a table
    assert spark.read.format("delta").load(path).count() == 6


def test_ledger_skips_the_history_look_only_for_batches_newer_than_its_own_writes(spark, delta_root, monkeypatch):
    path = str(delta_root / "ledger")
    tables.ensure(spark, path, SCHEMA)
    looks = []
    real_committed = tables.committed

    def counting(spark_, path_, token):  # noqa: ANN001, ANN202
        looks.append(token)
        return real_committed(spark_, path_, token)

    monkeypatch.setattr(tables, "committed", counting)

    def rows(i: int):  # noqa: ANN202
        return spark.createDataFrame([(i, str(i))], SCHEMA)

    run = tables.Ledger()
    assert tables.append_once(rows(0), path, "app", 0, ledger=run)
    assert looks == ["app@0"], "a run's first batch (a restart may replay it) is looked up"
    assert tables.append_once(rows(1), path, "app", 1, ledger=run)
    assert looks == ["app@0"], "a batch newer than this run's last write cannot be in the table"
    assert not tables.append_once(rows(1), path, "app", 1, ledger=run), "the same batch again is found"
    restarted = tables.Ledger()
    assert not tables.append_once(rows(1), path, "app", 1, ledger=restarted), "a new run's replay is found"
    assert looks == ["app@0", "app@1", "app@1"]
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == [0, 1]


def recompiled_by_repeated_merges(spark, root: str) -> int:  # noqa: ANN001
    """Classes Spark's code generation compiled for the last two of eight rounds of alike small MERGEs
    into two tables, one as a silver table is made, one without deletion vectors: two queries' MERGEs
    in turn, as the queries of one job take turns (the first rounds meet tables without rows to update
    or deletion vectors yet: plans of other shapes)."""
    compiled = spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME()
    paths = [f"{root}/merged", f"{root}/cdf"]
    tables.ensure(spark, paths[0], SCHEMA, tables.MERGED)
    tables.ensure(spark, paths[1], SCHEMA, tables.CDF)
    before = 0
    for i in range(8):
        if i == 6:
            before = compiled.getCount()
        for path in paths:
            source = spark.createDataFrame([(i % 2, f"v{i}"), (100 + i, "new")], SCHEMA).localCheckpoint()
            (
                DeltaTable.forPath(spark, path).alias("t").merge(source.alias("s"), "t.id = s.id")
                .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
            )
    return compiled.getCount() - before


def test_repeated_small_merges_compile_no_classes_again(spark, delta_root):
    # A MERGE into a table with a change data feed and deletion vectors needs more generated classes than
    # Spark's default cache of 100 holds among a job's queries: every batch compiled them again (354 per
    # probe, 16.3 s of CPU against 9.4 s; docs/freshness.md). spark/session.py makes room.
    assert spark.conf.get("spark.sql.codegen.cache.maxEntries") == "1000"
    assert recompiled_by_repeated_merges(spark, delta_root) == 0
