"""The propensity model: Spark MLlib logistic regression over the gold features, saved by version."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark.transforms.features import FEATURES

LATEST = "LATEST"


def fit(training: DataFrame) -> PipelineModel:
    labels = {r.label for r in training.select("label").distinct().collect()}
    if labels != {0.0, 1.0}:
        raise ValueError(f"training data needs both labels, got {sorted(labels)}: not enough history yet")
    pipeline = Pipeline(
        stages=[
            VectorAssembler(inputCols=FEATURES, outputCol="raw_features"),
            StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True),
            LogisticRegression(featuresCol="features", labelCol="label", maxIter=50, regParam=0.01),
        ]
    )
    return pipeline.fit(training)


def new_version(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return "lr-" + now.strftime("%Y%m%dT%H%M%S")


def save(model: PipelineModel, model_dir: str, version: str) -> str:
    path = f"{model_dir.rstrip('/')}/{version}"
    model.write().overwrite().save(path)
    # The pointer is written last: a reader never sees a half-saved model as the latest.
    pointer = Path(model_dir) / LATEST
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(version + "\n")
    tmp.replace(pointer)
    return path


def latest_version(model_dir: str) -> str | None:
    pointer = Path(model_dir) / LATEST
    return pointer.read_text().strip() if pointer.exists() else None


def load(model_dir: str, version: str) -> PipelineModel:
    return PipelineModel.load(f"{model_dir.rstrip('/')}/{version}")


def score(model: PipelineModel, feats: DataFrame, keep: Sequence[str] = ()) -> DataFrame:
    """customer_id, behavioural_stage, score (probability of the positive label), and ``keep``."""
    out = model.transform(feats)
    return out.select("customer_id", "behavioural_stage", vector_to_array("probability")[1].alias("score"), *keep)


def auc(scored: DataFrame, score_col: str = "score", label_col: str = "label") -> float:
    from pyspark.ml.evaluation import BinaryClassificationEvaluator

    evaluator = BinaryClassificationEvaluator(rawPredictionCol=score_col, labelCol=label_col, metricName="areaUnderROC")
    return float(evaluator.evaluate(scored.select(F.col(score_col).cast("double"), F.col(label_col).cast("double"))))


def precision_at_top(scored: DataFrame, share: float = 0.1, score_col: str = "score", label_col: str = "label") -> float:
    """Share of positives among the top ``share`` of customers by score."""
    n = scored.count()
    k = max(1, int(round(n * share)))
    ranked = scored.withColumn("_rank", F.row_number().over(Window.orderBy(F.col(score_col).desc())))
    top = ranked.where(F.col("_rank") <= k)
    return float(top.agg(F.avg(F.col(label_col).cast("double"))).first()[0])
