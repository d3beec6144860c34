"""The Spark layers' status as the feeder stores it and the insights page words it."""

from __future__ import annotations

import datetime as dt
import json

from schemas import topics
from spark import status as spark_status
from tests.support.samples import SAMPLES
from webapp.status import ConsistencyReport, FeederStatus, LayerStatus
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


def test_make_status_prints_each_layers_freshness_from_the_feeders_status_endpoint(capsys):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from webapp import pipeline_status
    from webapp.status import TopicStatus

    now = 1_767_229_300_000
    status = FeederStatus("feeder-1", state="running", heartbeat_ms=now - 2_000, kafka_ok=True, redis_ok=True,
                          topics={"dom.customer.consolidated.v1": TopicStatus("dom.customer.consolidated.v1", lag=3,
                                                                              records=60, last_event_ms=now - 5_000)},
                          dead_letters=0,
                          layers={"silver_orders": LayerStatus("silver", "silver_orders", 42, 17, now - 4_200, now - 1_000)})
    lines = pipeline_status.render(status, now)
    text = "\n".join(lines)
    assert lines[0].startswith("feeder feeder-1: running, Kafka up, Redis up, reported 2 s ago")
    assert "dom.customer.consolidated.v1" in text and " 3 " in text and " 60 " in text
    (silver,) = [line for line in lines if "silver_orders" in line]
    assert silver.split()[:3] == ["silver_orders", "42", "17"] and silver.endswith("3.2 s")
    for layer in ("bronze", "gold", "score"):  # a layer without a status says so, nothing invented
        assert any(line.split()[:1] == [layer] and "nothing published yet" in line for line in lines), layer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            data = json.dumps(status.as_json()).encode()  # as the feeder's /status serves it
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert pipeline_status.main([f"http://127.0.0.1:{server.server_port}/status"]) == 0
        assert "silver_orders" in capsys.readouterr().out
    finally:
        server.shutdown()
    assert pipeline_status.main(["http://127.0.0.1:9/status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pipeline_status: the feeder's status at http://127.0.0.1:9/status cannot be read") \
        and "\n" not in err


def _report(**overrides):
    return ConsistencyReport.from_record({**SAMPLES[topics.CONSISTENCY.name], **overrides})


def test_make_status_prints_the_newest_consistency_report_or_says_there_is_none(capsys):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from webapp import pipeline_status

    now = 1_767_229_300_000
    bare = FeederStatus("feeder-1", state="running", heartbeat_ms=now)
    assert pipeline_status.render(bare, now)[-1] == "  consistency: no report yet"
    report = _report(checked_at=now - 40_000, customers=1000, checked=998, agreeing=998, disagreeing=0,
                     catching_up=2)
    status = FeederStatus("feeder-1", state="running", heartbeat_ms=now, consistency=report)
    assert pipeline_status.render(status, now)[-1] == (
        "  consistency: 998/1000 checked, 998 agree, 0 disagree, 2 catching up (checked 40 s ago); 2 forgotten")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            data = json.dumps(status.as_json()).encode()  # as the feeder's /status serves it
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert pipeline_status.main([f"http://127.0.0.1:{server.server_port}/status"]) == 0
        assert "consistency: 998/1000 checked, 998 agree, 0 disagree, 2 catching up" in capsys.readouterr().out
    finally:
        server.shutdown()


def test_the_report_survives_the_status_round_trip_and_moves_the_figures():
    now = 1_767_229_300_000
    status = FeederStatus("f1", consistency=_report(checked_at=now))
    back = FeederStatus.from_json(status.to_json())
    assert back is not None and back.consistency == status.consistency
    assert back.consistency.examples[0]["metric"] == "lifetime_value"
    newer = FeederStatus("f1", consistency=_report(checked_at=now + 120_000))
    assert newer.figures != status.figures != FeederStatus("f1").figures  # the insights page re-renders
    older = json.loads(status.to_json())
    del older["consistency"]  # a status written before reports existed still reads
    assert FeederStatus.from_json(json.dumps(older)).consistency is None
