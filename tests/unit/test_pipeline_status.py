"""The Spark layers' status as the feeder stores it and the insights page words it."""

from __future__ import annotations

import datetime as dt
import json

from spark import status as spark_status
from webapp.status import FeederStatus, LayerStatus
from webapp.ui import duration


def test_layers_survive_the_round_trip_through_redis_and_the_api_adds_the_lag():
    status = FeederStatus("f1", layers={
        "bronze": LayerStatus("bronze", "bronze", 4, 10, 1_000, 3_500),
        "score": LayerStatus("score", "score", 1, 0, None, 9_000),
    })
    back = FeederStatus.from_json(status.to_json())
    assert back is not None and back.layers == status.layers
    body = back.as_json()
    assert body["layers"]["bronze"]["lag_ms"] == 2_500 and body["layers"]["score"]["lag_ms"] is None
    # a status written before layers existed still reads (no layers)
    older = json.loads(status.to_json())
    del older["layers"]
    assert FeederStatus.from_json(json.dumps(older)).layers == {}

def test_a_batch_of_several_tables_is_one_status():
    M = spark_status.Measured
    assert spark_status.combine([M(3, 100, ("probe-b",)), M(0, None), M(2, 250, ("probe-a", "probe-b"))]) == M(
        5, 250, ("probe-a", "probe-b"))
    assert spark_status.combine([]) == M(0, None, ())
    many = [M(1, 1, (f"probe-{i:02d}",)) for i in range(30)]
    assert len(spark_status.combine(many).probes) == 20  # a status names a bounded number of probes
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    assert spark_status.millis(stamp) == int(stamp.timestamp() * 1000)
    assert spark_status.millis(stamp.astimezone().replace(tzinfo=None)) == int(stamp.timestamp() * 1000)
    assert spark_status.millis(None) is None


def test_lags_are_worded_for_people():
    assert [duration(v) for v in (None, 850, 4_200, 185_000, 7_800_000, 277_200_000, -1_500)] == [
        "—", "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min", "3 d 5 h", "-1.5 s"]
