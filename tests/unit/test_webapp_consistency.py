"""The consistency report's way into the web UI's cache, pure parts: decoded against its contract (with the
counts checked as the contract's docs state them), the newest report wins, and its summary line."""

from __future__ import annotations

import uuid

import pytest

from schemas import serde, topics
from tests.support.samples import SAMPLES
from webapp.cache import CONSISTENCY_TOPIC, newest_report
from webapp.records import Decoder, Mismatch, Record
from webapp.status import ConsistencyReport

SAMPLE = SAMPLES[topics.CONSISTENCY.name]


@pytest.fixture
def avro():
    registry = serde.registry_client(f"mock://{uuid.uuid4().hex}")
    return Decoder(registry), serde.TopicSerde(registry, topics.CONSISTENCY)


def test_a_report_is_read_with_its_contract_under_its_constant_key(avro):
    decoder, codec = avro
    record, remarks = decoder.decode(CONSISTENCY_TOPIC, b"consistency", codec.serialize(SAMPLE), 7)
    assert remarks == [] and record.customer_id == "consistency"
    assert ConsistencyReport.from_record(record.value) == ConsistencyReport.from_record(SAMPLE)
    assert record.value["checked_at"] == SAMPLE["checked_at"]  # epoch ms, as every time in the cache


@pytest.mark.parametrize("key,value,kind", [
    (b"c-1", None, "key is not 'consistency'"),
    (None, None, "key is not 'consistency'"),
    (b"consistency", b"\x07junk", "value is not Confluent-framed Avro"),
    (b"consistency", {"checked": 991}, "checked is not agreeing + disagreeing"),
    (b"consistency", {"catching_up": -1}, "a negative count"),
])
def test_a_report_that_does_not_match_is_a_mismatch_of_one_kind(avro, key, value, kind):
    decoder, codec = avro
    if isinstance(value, dict):
        value = codec.serialize({**SAMPLE, **value})
    with pytest.raises(Mismatch) as found:
        decoder.decode(CONSISTENCY_TOPIC, key, value if value is not None else codec.serialize(SAMPLE), 7)
    assert str(found.value) == kind


def _rec(checked_at: int | None, disagreeing: int = 1) -> Record:
    value = None if checked_at is None else {**SAMPLE, "checked_at": checked_at, "disagreeing": disagreeing,
                                             "agreeing": SAMPLE["checked"] - disagreeing}
    return Record(CONSISTENCY_TOPIC, "consistency", value, None)


def test_the_newest_report_wins_and_a_late_older_one_or_a_tombstone_changes_nothing():
    assert newest_report(None, []) is None
    assert newest_report(None, [_rec(5), _rec(9), _rec(7)]).checked_at == 9
    stored = ConsistencyReport.from_record({**SAMPLE, "checked_at": 10}).to_json()
    assert newest_report(stored, [_rec(7), _rec(None)]) is None, "older than the stored one: kept as is"
    tie = newest_report(stored, [_rec(10, disagreeing=0)])
    assert tie is not None and tie.disagreeing == 0, "same run time: the later record wins"
    assert newest_report("{not json", [_rec(3)]).checked_at == 3, "a malformed stored value is replaced"


def test_the_summary_line():
    report = ConsistencyReport.from_record({**SAMPLE, "checked_at": 1_000_000})
    assert report.summary(1_040_500) == "990/1000 checked, 989 agree, 1 disagree, 10 catching up (checked 40 s ago); 2 forgotten"
    assert ConsistencyReport.from_json('{"checked": 1}') is None and ConsistencyReport.from_json(None) is None


def test_forgotten_customers_are_shown_and_a_v1_report_still_reads():
    report = ConsistencyReport.from_record({**SAMPLE, "checked_at": 1_000_000})
    assert report.forgotten == SAMPLE["forgotten"] > 0
    assert report.summary(1_040_500).endswith(f"(checked 40 s ago); {SAMPLE['forgotten']} forgotten")
    v1 = {k: v for k, v in SAMPLE.items() if k != "forgotten"}  # a report the check wrote before contract v2
    assert ConsistencyReport.from_record(v1).forgotten == 0
    assert "forgotten" not in ConsistencyReport.from_record(v1).summary()
    with pytest.raises(KeyError):
        ConsistencyReport.from_record({k: v for k, v in SAMPLE.items() if k != "checked"})
