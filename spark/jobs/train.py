"""Train and save a new propensity model version from the silver tables.

Cutoff = the newest order time in silver; features as of ``cutoff - LABEL_WINDOW_DAYS``, label = ordered
in the window after that (see spark/transforms/features.py). Prints the hold-out AUC.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from schemas.probes import PROBE_PREFIX
from spark import model as M
from spark import preflight, tables
from spark.entities import ACTIVATIONS, CUSTOMERS, ORDERS
from spark.runtime import main_batch
from spark.settings import JobSettings
from spark.transforms.features import training_set

log = logging.getLogger(__name__)


SILVER = (CUSTOMERS, ORDERS, ACTIVATIONS)
RUN_FIRST = "run the bronze and silver jobs first, or point DELTA_ROOT at their tables"


class NoHistory(ValueError):
    """Silver holds nothing to learn from yet."""


def inputs(settings: JobSettings) -> None:
    """Before Spark starts: the silver tables are where DELTA_ROOT says (local paths)."""
    preflight.tables_exist(settings, [settings.table("silver", e.silver) for e in SILVER], RUN_FIRST)


def silver(spark: SparkSession, settings: JobSettings):  # noqa: ANN201
    """Silver's customers, orders and activations without make verify's probe customers (never trained
    or evaluated on: schemas/probes.py)."""

    def read(e):  # noqa: ANN001, ANN202
        path = settings.table("silver", e.silver)
        if not tables.exists(spark, path):  # any filesystem, also those inputs() cannot see
            raise preflight.DependencyError("Delta table missing", path, settings.env_name("delta_root"),
                                            f"no Delta table there ({RUN_FIRST})")
        return spark.read.format("delta").load(path).where(~F.col("customer_id").startswith(PROBE_PREFIX))

    return read(CUSTOMERS), read(ORDERS), read(ACTIVATIONS)


def run(spark: SparkSession, settings: JobSettings) -> str:
    customers, orders, activations = silver(spark, settings)
    newest = orders.agg(F.max("placed_at")).first()[0]
    if newest is None:
        raise NoHistory("no orders in silver yet: nothing to train on (publish events, e.g. python -m seed)")
    cutoff = newest if isinstance(newest, dt.datetime) else dt.datetime.fromisoformat(str(newest))
    data = training_set(customers, orders, activations, cutoff, settings.label_window_days).cache()
    train_part, test_part = data.randomSplit([0.8, 0.2], seed=7)
    fitted = M.fit(train_part)
    version = M.new_version()
    holdout = M.auc(M.score(fitted, test_part).join(test_part.select("customer_id", "label"), "customer_id"))
    M.save(M.fit(data), settings.models, version)
    log.info("model %s saved to %s (hold-out AUC %.3f on %d customers)", version, settings.models, holdout, data.count())
    print(f"model {version}: hold-out AUC {holdout:.3f}")
    data.unpersist()
    return version


def _main(spark: SparkSession, settings: JobSettings) -> None:
    try:
        run(spark, settings)
    except NoHistory as exc:
        print(f"train: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main_batch("train", _main, checks=(preflight.storage, inputs))
