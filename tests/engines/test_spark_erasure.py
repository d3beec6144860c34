"""spark/jobs/erasure.py on real Spark + Delta: a small simulated history through bronze, silver, gold
and score (plus a quarantined record that carries the customer's e-mail in its raw bytes), then the
customer is forgotten as the cluster does it (the request on the topic, the job's --from-topic run while
the streaming jobs' checkpoints are behind it, the jobs reading on, the next run vacuuming). Every parquet file under the Delta root (tables, _change_data, _delta_log
checkpoints) is read back with Spark, and every other _delta_log file as text: none holds a trace of the
customer's name, e-mail or phone (the tables keep no file statistics on those columns); the other
customers are untouched; erasing twice is fine; an unknown id is one clear message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T

from forget import request
from forget.settings import ForgetSettings
from schemas import topics
from seed.simulator import SimConfig, Simulator
from spark import tables
from spark.jobs import bronze, erasure, gold, score, silver
from tests.support import pipeline

CUSTOMERS = 8
JOBS = (bronze, silver, gold, score)


def parquet_files(root: str) -> dict[str, list[str]]:
    """Every parquet file under ``root``, by directory (one directory: one schema, read in one go)."""
    found: dict[str, list[str]] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".parquet"):
                found.setdefault(folder, []).append(os.path.join(folder, name))
    return found


def dump(spark, root: str) -> tuple[str, int]:
    """The text of every row of every parquet file (binary columns decoded as UTF-8) and the file count."""
    texts, count = [], 0
    for _folder, files in sorted(parquet_files(root).items()):
        count += len(files)
        df = spark.read.option("mergeSchema", "true").parquet(*files)
        df = df.select([F.col(f.name).cast("string").alias(f.name) if isinstance(f.dataType, T.BinaryType)
                        else F.col(f.name) for f in df.schema.fields])
        texts.extend(df.toJSON().collect())
    return "\n".join(texts), count


def log_text(root: str) -> tuple[str, int]:
    """The text of every non-parquet file of every _delta_log (the JSON commits and the .crc checksums,
    which list a snapshot's files with their statistics; checkpoints are parquet, read by ``dump``)."""
    parts = []
    for folder, _dirs, files in os.walk(root):
        if folder.endswith("_delta_log"):
            parts.extend(Path(folder, n).read_text(encoding="utf-8", errors="replace")
                         for n in files if not n.endswith(".parquet"))
    return "\n".join(parts), len(parts)


def delta_tables(root: str) -> list[str]:
    return sorted(folder for folder, dirs, _files in os.walk(root) if "_delta_log" in dirs)


def personal(history, customer_id: str) -> set[str]:
    values = set()
    for e in history:
        if e.topic is topics.CUSTOMER_PROFILE and e.key == customer_id and e.record is not None:
            values |= {e.record[k] for k in ("first_name", "last_name", "email", "phone") if e.record.get(k)}
    return values


@pytest.fixture(scope="module")
def stack(tmp_path_factory, kafka_broker, schema_registry, spark):
    root = tmp_path_factory.mktemp("erasure")
    jobs = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(root / "delta"),
                                 pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, jobs)
    history = list(Simulator(SimConfig(customers=CUSTOMERS, days=30, seed=5)).events())
    ids = sorted({e.key for e in history if e.topic is topics.CUSTOMER_PROFILE})
    gone, kept = ids[0], ids[1]
    # a distinctive profile edit (seeded first names repeat across customers) and a quarantined record
    last = max(e.record["updated_at"] for e in history if e.topic is topics.CUSTOMER_PROFILE and e.key == gone)
    edit = {**next(e.record for e in history if e.topic is topics.CUSTOMER_PROFILE and e.key == gone),
            "first_name": "Zyxforgotten", "last_name": "Qwvanished", "email": "zyx.erased@forget.example",
            "phone": "+3247000111", "updated_at": last + 1000}
    bad = b"\x07not avro " + json.dumps({"email": "zyx.quarantined@forget.example", "id": gone}).encode()
    events = [(e.topic, e.key, e.record) for e in history] + [
        (topics.CUSTOMER_PROFILE, gone, edit), (topics.CUSTOMER_PROFILE, gone, bad)]
    pipeline.produce(kafka_broker, jobs, events)
    for job in (bronze, silver, gold, score):  # score trains the model first (none yet)
        pipeline.run(job, spark, jobs)
    secrets = personal(history, gone) | {"Zyxforgotten", "Qwvanished", "zyx.erased@forget.example",
                                        "+3247000111", "zyx.quarantined@forget.example"}
    others = set().union(*(personal(history, i) for i in ids if i != gone))
    return jobs, gone, kept, secrets - others, personal(history, kept) - personal(history, gone)


def test_the_erasure_as_the_cluster_runs_it_leaves_no_trace_and_the_jobs_read_on(spark, stack, kafka_broker,
                                                                                  schema_registry, capsys):
    """The request and the redacted profile as ``python -m forget`` publishes them (twice: one erasure answers
    both); ``--from-topic`` while every streaming reader's checkpoint is behind its commits (the VACUUMs of
    the tables they read are deferred; quarantine, read by no stream, is vacuumed at once); the four jobs
    read on without failing and without bringing the customer back as counts; the next run vacuums."""
    jobs, gone, kept, secrets, kept_secrets = stack
    before, files_before = dump(spark, jobs.delta_root)
    assert {s for s in secrets if s in before} == secrets  # the scan sees what it looks for
    quarantine = spark.read.format("delta").load(jobs.table("quarantine", "records"))
    assert quarantine.count() >= 1
    settings = ForgetSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
                                        "SCHEMA_REGISTRY_URL": schema_registry.url, "TOPIC_PREFIX": jobs.topic_prefix})
    first = request.build(gone, "test")
    request.publish(settings, first)
    request.publish(settings, request.build(gone, "test, again"))

    lines = erasure.run_requests(spark, jobs, reader_wait_s=0)
    (done,) = [line for line in lines if line.startswith(f"erasure: customer {gone}: deleted")]
    # the job's own scan finds the files the deferred VACUUMs will remove
    (scanned,) = [line for line in lines if line.startswith("erasure: scan of ")]
    assert "still hold personal data of the forgotten customer(s) until the deferred VACUUM" in scanned, scanned
    assert "quarantine/records 1" in done and "bronze/customer_profile" in done
    deferred = {line.split("VACUUM of ")[1].split(" ")[0] for line in lines if line.startswith("erasure: VACUUM of ")}
    # bronze is read by silver, silver by gold (change feed), gold c360 by score
    assert {"bronze/customer_profile", "silver/customers", "silver/orders", "gold/c360"} <= deferred
    assert "quarantine/records" not in deferred
    report = spark.read.format("delta").load(jobs.table("erasure", "report"))
    assert report.where(F.col("request_id") == first["request_id"]).count() == 1  # the older request: answered
    assert {r.store for r in report.where((F.col("customer_id") == gone) & ~F.col("vacuumed")).collect()} == deferred
    assert {r.store for r in report.where(F.col("customer_id") == gone).collect()} >= {
        "bronze/customer_profile", "silver/customers", "gold/c360", "quarantine/records"}

    for job in JOBS:  # the readers read the erasure's commits (and the redacted profile) without failing
        pipeline.run(job, spark, jobs)
    c360 = spark.read.format("delta").load(jobs.table("gold", "c360")).where(F.col("customer_id") == gone).collect()
    for row in c360:  # at most the redacted profile's empty shell: no counts of the deleted orders
        assert (row.first_name, row.email, row.order_count) == ("", "", 0), row

    lines = erasure.run_requests(spark, jobs, reader_wait_s=60)
    assert not any(line.startswith("erasure: VACUUM of ") for line in lines), lines
    assert any(line.startswith("erasure: vacuumed ") and "silver/customers" in line for line in lines), lines
    # the job's scan, given the values, now finds nothing
    assert erasure.scan(spark, jobs.delta_root, secrets).hits == []
    after, files_after = dump(spark, jobs.delta_root)
    assert files_after > 0
    assert sorted(s for s in secrets if s in after) == [], "personal data left in parquet files"
    assert kept_secrets and all(s in after for s in kept_secrets)  # the other customers are untouched
    assert spark.read.format("delta").load(jobs.table("silver", "customers")).where(
        F.col("customer_id") == kept).count() == 1
    text, log_files = log_text(jobs.delta_root)
    in_log = sorted(s for s in secrets if s in text)
    print(f"parquet files scanned: {files_before} before, {files_after} after; _delta_log files scanned: "
          f"{log_files}; personal values still in _delta_log (file statistics): {len(in_log)} of {len(secrets)}")
    assert in_log == [], "personal data left in _delta_log (file statistics on a personal column?)"
    for job in JOBS:  # nothing the VACUUM removed was still needed by a reader
        pipeline.run(job, spark, jobs)
    assert erasure.run_requests(spark, jobs, reader_wait_s=0) == []  # nothing new, nothing left to vacuum


def test_every_table_with_personal_columns_keeps_no_statistics_on_them(spark, stack):
    jobs = stack[0]
    personal_tables = []
    for path in delta_tables(jobs.delta_root):
        table = DeltaTable.forPath(spark, path)
        columns = set(table.toDF().columns)
        stats = (table.detail().select("properties").first()[0] or {}).get(tables.STATS_COLUMNS)
        if columns & tables.PERSONAL:
            personal_tables.append(os.path.relpath(path, jobs.delta_root))
            assert stats, path
            listed = {c.strip("`") for c in stats.split(",")}
            assert not listed & tables.PERSONAL and "customer_id" in listed, (path, stats)
    assert sorted(personal_tables) == ["bronze/customer_profile", "gold/c360", "silver/customers"]


def test_erasing_twice_is_fine_and_an_unknown_id_is_one_clear_message(spark, stack):
    jobs, gone, _kept, _secrets, _ = stack
    erasure.run(spark, jobs, [gone], reader_wait_s=0)  # the first test may not have run alone: erased once
    (line,) = [x for x in erasure.run(spark, jobs, [gone], reader_wait_s=0) if x.startswith("erasure: customer")]
    assert line.startswith(f"erasure: customer {gone}: nothing left to erase (erased on ")
    with pytest.raises(erasure.UnknownCustomer, match=r"unknown customer id no-such-customer: no Delta table under "):
        erasure.run(spark, jobs, ["no-such-customer"], reader_wait_s=0)
    with pytest.raises(ValueError, match="not a customer id"):
        erasure.run(spark, jobs, ["bad id; DROP TABLE"])
