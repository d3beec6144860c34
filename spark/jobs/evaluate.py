"""Evaluate the propensity model against the simulator's hidden ground truth, beside an RFM baseline.

    python -m spark.jobs.evaluate --ground-truth data/ground_truth.csv

Reads the seed's sidecar (``<stem>.meta.json``) for the cutoff and label window, trains on the
history before the cutoff only, scores every customer as of the cutoff and prints AUC and
precision at the top decile for the model and for RFM, side by side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark import model as M
from spark import preflight
from spark.jobs import train
from spark.jobs.train import silver
from spark.runtime import main_batch
from spark.settings import JobSettings
from spark.transforms.features import c360_as_of, features, rfm_score, training_set


def read_truth(spark: SparkSession, path: str) -> tuple[DataFrame, dt.datetime, int]:
    csv_path = Path(path)
    meta_path = csv_path.with_name(csv_path.stem + ".meta.json")
    if not csv_path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"ground truth {csv_path} or its sidecar {meta_path.name} is missing (python -m seed --ground-truth)")
    meta = json.loads(meta_path.read_text())
    cutoff = dt.datetime.fromtimestamp(meta["cutoff_ms"] / 1000, dt.UTC).replace(tzinfo=None)
    truth = spark.read.option("header", True).csv(str(csv_path)).select(
        "customer_id", F.col("label").cast("double").alias("label")
    )
    return truth, cutoff, int(meta["label_window_days"])


def evaluate(spark: SparkSession, settings: JobSettings, truth_path: str) -> dict[str, dict[str, float]]:
    truth, cutoff, window = read_truth(spark, truth_path)
    customers, orders, activations = silver(spark, settings)
    fitted = M.fit(training_set(customers, orders, activations, cutoff, window))
    feats = features(c360_as_of(customers, orders, activations, cutoff)).cache()
    scored = M.score(fitted, feats).join(truth, "customer_id").cache()
    rfm = feats.withColumn("score", rfm_score(feats)).select("customer_id", "score").join(truth, "customer_id").cache()
    results = {
        name: {"auc": M.auc(frame), "precision_top_decile": M.precision_at_top(frame), "customers": frame.count()}
        for name, frame in (("model", scored), ("rfm", rfm))
    }
    base_rate = truth.agg(F.avg("label")).first()[0]
    results["base_rate"] = {"positive_share": float(base_rate or 0.0)}
    return results


def report(results: dict[str, dict[str, float]]) -> str:
    lines = [f"{'':10} {'AUC':>7} {'P@top10%':>9} {'customers':>10}"]
    for name in ("model", "rfm"):
        r = results[name]
        lines.append(f"{name:10} {r['auc']:7.3f} {r['precision_top_decile']:9.3f} {int(r['customers']):10d}")
    lines.append(f"base rate (share of customers who ordered in the window): {results['base_rate']['positive_share']:.3f}")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark.jobs.evaluate")
    parser.add_argument("--ground-truth", required=True, help="CSV written by python -m seed --ground-truth")
    return parser.parse_args(argv)


def truth_present(path: str) -> None:
    """Before Spark starts: the ground truth and its sidecar are there."""
    csv_path = Path(path)
    meta_path = csv_path.with_name(csv_path.stem + ".meta.json")
    for needed in (csv_path, meta_path):
        if not needed.is_file():
            raise preflight.DependencyError("ground truth missing", str(needed), "--ground-truth",
                                            "no such file (write it with python -m seed --ground-truth)")


def run(spark: SparkSession, settings: JobSettings, argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        print(report(evaluate(spark, settings, args.ground_truth)))
    except FileNotFoundError as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    # Arguments and files first: a typo costs no JVM start.
    truth = parse(sys.argv[1:]).ground_truth
    main_batch("evaluate", lambda spark, settings: run(spark, settings, ["--ground-truth", truth]),
               checks=(train.inputs, lambda _settings: truth_present(truth)))
