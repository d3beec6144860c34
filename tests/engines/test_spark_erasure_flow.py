"""The erasure as the cluster runs it, on real Kafka, Spark and Delta (Schema Registry: the TEST DOUBLE):
``python -m forget``'s request and redacted profile on the topics, ``spark.jobs.erasure --from-topic``
while the streaming jobs' checkpoints are behind it (VACUUM deferred, nothing breaks), the jobs read on
(silver skips bronze's DELETE commits, gold does not bring the customer back as negative counts), the
next run vacuums, and afterwards no parquet file under the Delta root holds the customer's name, e-mail
or phone, and every job still runs."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from forget import request
from forget.settings import ForgetSettings
from spark.jobs import bronze, erasure, gold, score, silver
from tests.engines.test_spark_erasure import dump, stack  # noqa: F401 - the module's pipeline fixture
from tests.support import pipeline

JOBS = (bronze, silver, gold, score)


@pytest.fixture(scope="module")
def forgotten(stack, kafka_broker, schema_registry, spark):  # noqa: F811
    jobs, gone, kept, secrets, kept_secrets = stack
    settings = ForgetSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
                                        "SCHEMA_REGISTRY_URL": schema_registry.url, "TOPIC_PREFIX": jobs.topic_prefix})
    first = request.build(gone, "test")
    request.publish(settings, first)
    request.publish(settings, request.build(gone, "test, again"))  # twice: one erasure answers both
    return jobs, gone, kept, secrets, kept_secrets, first


def test_erasure_from_the_topic_waits_for_its_readers_and_the_jobs_read_on(forgotten, spark, capsys):
    jobs, gone, kept, secrets, kept_secrets, first = forgotten
    # The jobs ran to the end before the erasure: every reader is behind the erasure's own commits.
    lines = erasure.run_requests(spark, jobs, reader_wait_s=0)
    assert any(f"customer {gone}: deleted" in line and "bronze/customer_profile" in line for line in lines)
    deferred = {line.split("VACUUM of ")[1].split(" ")[0] for line in lines if line.startswith("erasure: VACUUM of ")}
    # bronze is read by silver, silver by gold (change feed), gold c360 by score
    assert {"bronze/customer_profile", "silver/customers", "silver/orders", "gold/c360"} <= deferred
    assert "quarantine/records" not in deferred  # no streaming reader: vacuumed at once
    report = spark.read.format("delta").load(jobs.table("erasure", "report"))
    assert report.where(F.col("request_id") == first["request_id"]).count() == 1  # the older request: answered
    assert {r.store for r in report.where((F.col("customer_id") == gone) & ~F.col("vacuumed")).collect()} == deferred

    for job in JOBS:  # the readers read the erasure's commits (and the redacted profile) without failing
        pipeline.run(job, spark, jobs)
    c360 = spark.read.format("delta").load(jobs.table("gold", "c360")).where(F.col("customer_id") == gone).collect()
    for row in c360:  # at most the redacted profile's empty shell: no counts of the deleted orders
        assert (row.first_name, row.email, row.order_count) == ("", "", 0), row
    assert spark.read.format("delta").load(jobs.table("silver", "customers")).where(
        F.col("customer_id") == kept).count() == 1

    lines = erasure.run_requests(spark, jobs, reader_wait_s=60)
    assert not any(line.startswith("erasure: VACUUM of ") for line in lines), lines
    assert any(line.startswith("erasure: vacuumed ") and "silver/customers" in line for line in lines), lines
    after, files = dump(spark, jobs.delta_root)
    assert files > 0
    assert sorted(s for s in secrets if s in after) == [], "personal data left in parquet files"
    assert all(s in after for s in kept_secrets)
    for job in JOBS:  # nothing the VACUUM removed was still needed by a reader
        pipeline.run(job, spark, jobs)
    # a second run finds no new request and nothing left to vacuum
    assert erasure.run_requests(spark, jobs, reader_wait_s=0) == []
    print("\n".join(capsys.readouterr().out.splitlines()[-3:]))
