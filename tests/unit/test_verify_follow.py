"""verify's bookkeeping of what each hop saw, fed with decoded records (no broker: the engines tier
runs the whole of verify against the real one, tests/engines/test_verify.py)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from schemas import topics
from verify.follow import HOP_WHAT, Hop, Report, _Follow
from verify.settings import VerifySettings

PROBE = "probe-0123456789ab"


class _Msg:
    def __init__(self, topic: str, value: Any, key: str | None = None):
        self._topic, self._value, self._key = topic, value, key

    def topic(self) -> str:
        return self._topic

    def value(self) -> Any:
        return self._value

    def key(self) -> bytes | None:
        return None if self._key is None else self._key.encode()


def _serde(decode):
    return SimpleNamespace(deserialize=decode)


def _follow(*names: str, undecodable: bool = False) -> _Follow:
    def decode(value: Any) -> Any:
        if undecodable:
            raise ValueError("unknown magic byte")
        return value

    feed = SimpleNamespace(status_serde=_serde(decode), score_serde=_serde(decode), poll=lambda timeout: [])
    hops = {n: Hop(n, HOP_WHAT[n]) for n in names}
    return _Follow(VerifySettings(), PROBE, hops, feed, None, time.monotonic(), {})  # type: ignore[arg-type]


def _status(job: str, query: str, batch: int, probes: list[str], newest: int | None = 1_000) -> dict:
    return {"job": job, "query": query, "batch_id": batch, "rows": 3, "probes": probes,
            "newest_event_at": newest, "committed_at": 4_500}


def test_silver_passes_only_once_all_three_silver_queries_named_the_probe():
    f = _follow("silver", "gold")
    for query in ("silver_customers", "silver_orders"):
        f.on_message(_Msg(topics.PIPELINE_STATUS.name, _status("silver", query, 1, [PROBE])))
    assert not f.hops["silver"].passed
    f.on_message(_Msg(topics.PIPELINE_STATUS.name, _status("gold", "gold_c360", 8, ["probe-other"])))
    f.on_message(_Msg(topics.PIPELINE_STATUS.name, _status("silver", "silver_activations", 2, [PROBE])))
    assert f.hops["silver"].passed and "silver_activations batch 2" in f.hops["silver"].detail
    assert not f.hops["gold"].passed
    assert f.freshness == {"silver_customers": 3_500, "silver_orders": 3_500, "silver_activations": 3_500,
                           "gold_c360": 3_500}


def test_a_failed_hop_reports_the_last_batch_it_saw():
    f = _follow("bronze", "gold")
    f.on_message(_Msg(topics.PIPELINE_STATUS.name, _status("gold", "gold_c360", 8, [])))
    f.settings = VerifySettings(timeout_s=0.01, hops=("bronze", "gold"))  # type: ignore[call-arg]
    f.run(lambda line: None)  # nothing more comes: the deadline passes
    report = Report(PROBE, list(f.hops.values()), elapsed_s=0.01)
    assert not report.ok
    assert report.lines()[-1].startswith("FAIL 0/2: first failed hop bronze")
    assert f.hops["gold"].detail == "newest gold_c360 batch 8 (3 rows) without the probe"


def test_an_undecodable_status_is_what_each_silent_layer_last_saw():
    f = _follow("bronze", "silver", "gold", undecodable=True)
    f.on_message(_Msg(topics.PIPELINE_STATUS.name, b"\x07junk"))
    assert set(f.newest_status) == {"bronze", "silver", "gold"}
    assert all("undecodable batch status (unknown magic byte)" in v for v in f.newest_status.values())


def test_the_kafka_hop_needs_all_three_source_records_of_the_probe():
    f = _follow("kafka", "score")
    f.on_message(_Msg(topics.CUSTOMER_PROFILE.name, {}, PROBE))
    f.on_message(_Msg(topics.ORDER_PLACED.name, {}, "someone-else"))
    f.on_message(_Msg(topics.ORDER_PLACED.name, {}, PROBE))
    assert not f.hops["kafka"].passed
    f.on_message(_Msg(topics.ACTIVATION_STATUS.name, {}, PROBE))
    f.on_message(_Msg(topics.PROPENSITY_SCORE.name, {"score": 0.25, "model_version": "m1"}, PROBE))
    assert f.hops["kafka"].passed and f.hops["score"].detail == "0.250 (model m1)"


def test_the_newest_consistency_report_is_a_line_beside_the_hops_never_their_verdict():
    import datetime as dt

    from tests.support.samples import SAMPLES
    from verify.follow import consistency_line

    sample = SAMPLES[topics.CONSISTENCY.name]
    now = sample["checked_at"] + 40_000
    older = {**sample, "checked_at": dt.datetime.fromtimestamp((now - 300_000) / 1000, dt.UTC), "disagreeing": 0}
    newest = {**sample, "checked_at": dt.datetime.fromtimestamp(sample["checked_at"] / 1000, dt.UTC)}  # as fastavro
    assert consistency_line([newest, older], now) == \
        "990/1000 checked, 989 agree, 1 disagree, 10 catching up (checked 40 s ago); 2 forgotten"
    assert consistency_line([], now) is None
    hops = [Hop("kafka", HOP_WHAT["kafka"], seen_s=1.0)]
    shown = Report(PROBE, hops, consistency=consistency_line([newest], now)).lines()
    assert shown[-2] == ("  consistency (ksqlDB view vs gold, not a hop): "
                         "990/1000 checked, 989 agree, 1 disagree, 10 catching up (checked 40 s ago); 2 forgotten")
    assert shown[-1] == "PASS 1/1"
    failing = Report(PROBE, [Hop("web", HOP_WHAT["web"])], consistency="0/0 checked").lines()
    assert failing[-1].startswith("FAIL 0/1"), "the report changes no verdict"
    assert not any("consistency" in line for line in Report(PROBE, hops).lines()), "no report: no line"
