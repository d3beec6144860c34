"""Entry-point plumbing shared by the jobs: settings, session, trigger, graceful shutdown."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

from pyspark.sql import SparkSession
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from common.logs import configure
from common.settings import ConfigError
from spark.session import MissingJarsError, build_session
from spark.settings import JobSettings

log = logging.getLogger(__name__)


def session_for(job: str, settings: JobSettings) -> SparkSession:
    try:
        spark = build_session(
            f"marketing-engine-{job}", master=settings.spark_master or None, jars_dir=settings.jars_dir or None
        )
    except (MissingJarsError, FileNotFoundError) as exc:
        print(f"{job}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    spark.sparkContext.setLogLevel("WARN")
    return spark


def with_trigger(writer: DataStreamWriter, settings: JobSettings) -> DataStreamWriter:
    if settings.trigger == "available-now":
        return writer.trigger(availableNow=True)
    if settings.trigger == "once":
        return writer.trigger(once=True)
    return writer.trigger(processingTime=settings.trigger)


def await_all(spark: SparkSession, queries: list[StreamingQuery]) -> None:
    """Run until a query fails (raise: the operator restarts the app) or all finish (available-now)."""

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping %d queries", signum, len(queries))
        for q in queries:
            q.stop()

    signal.signal(signal.SIGTERM, stop)
    for q in queries:
        q.awaitTermination()
        if q.exception() is not None:
            raise RuntimeError(f"query {q.name} failed: {q.exception()}")


def _settings(job: str) -> JobSettings:
    try:
        return JobSettings.from_env()
    except ConfigError as exc:
        print(f"{job}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main_batch(job: str, run: Callable[[SparkSession, JobSettings], object]) -> None:
    """A batch entry point (train, evaluate): same settings and session, runs once."""
    settings = _settings(job)
    configure(settings.log_level)
    spark = session_for(job, settings)
    try:
        run(spark, settings)
    finally:
        spark.stop()


def main(job: str, start: Callable[[SparkSession, JobSettings], list[StreamingQuery]]) -> None:
    settings = _settings(job)
    configure(settings.log_level)
    spark = session_for(job, settings)
    try:
        await_all(spark, start(spark, settings))
    finally:
        spark.stop()
