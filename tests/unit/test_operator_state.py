"""Annotations the operator keeps on a ConfigMap: small, content-free, robust to garbage."""

from __future__ import annotations

import json

import kopf
import pytest

from operators.ksql import state
from operators.ksql.planner import Record

RECORDS = [Record("S_A", "010-a.sql#1", "0123456789abcdef", "created"),
           Record("T_B", "020-b.sql#2", "", "failed")]


def test_state_round_trips_and_is_compact():
    text = state.encode(RECORDS, "ConfigMap ns/x: 020-b.sql statement 2: boom")
    records, error = state.decode({state.STATE: text})
    assert list(records.values()) == RECORDS and error.endswith("boom")
    assert " " not in text.replace("ConfigMap ns/x: 020-b.sql statement 2: boom", "")


def test_state_never_contains_statement_text_and_errors_are_truncated():
    text = state.encode(RECORDS, "x" * 5000)
    assert "CREATE" not in text and len(text) < 800


def test_huge_state_is_refused_instead_of_jamming_the_object():
    many = [Record(f"S_{i:06d}_" + "x" * 60, f"f.sql#{i}", "0" * 16, "created") for i in range(2000)]
    with pytest.raises(state.StateTooLarge, match="split this ConfigMap"):
        state.encode(many)


@pytest.mark.parametrize("raw", ["not json", json.dumps({"v": 99, "s": []}), json.dumps({"v": 1, "s": [[1]]}),
                                 json.dumps([1, 2]), ""])
def test_garbage_state_reads_as_empty(raw):
    assert state.decode({state.STATE: raw}) == ({}, None)


@pytest.mark.parametrize("value,policy,valid", [(None, "keep", True), ("drop", "drop", True), (" Drop ", "drop", True),
                                                ("keep", "keep", True), ("delete", "keep", False)])
def test_deletion_policy(value, policy, valid):
    ann = {} if value is None else {state.DELETION_POLICY: value}
    assert state.deletion_policy(ann) == policy
    assert state.policy_is_valid(ann) is valid


def body(data: dict, annotations: dict | None = None) -> kopf.Body:
    return kopf.Body({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "ns", "labels": {"marketing-engine.io/ksql": "true"},
                     "annotations": annotations or {}, "resourceVersion": "7", "uid": "u"},
        "data": data,
    })


def test_diff_base_stores_a_digest_not_the_content_and_ignores_our_output():
    storage = state.DigestDiffBaseStorage(prefix=state.KOPF_PREFIX, v1=False)
    big = {"010-a.sql": "CREATE STREAM X AS SELECT * FROM Y;\n" * 5000}  # ~180 KB of SQL
    essence = storage.build(body=body(big))
    encoded = json.dumps(essence)
    assert len(encoded) < 300 and "CREATE" not in encoded
    assert essence["metadata"]["labels"] == {"marketing-engine.io/ksql": "true"}

    # content change -> different essence (kopf calls the update handler)
    changed = storage.build(body=body({"010-a.sql": big["010-a.sql"] + " "}))
    assert changed != essence
    # the operator's own output annotations do not count as a change
    with_output = storage.build(body=body(big, {state.STATE: "{...}", state.APPLIED_HASH: "abc"}))
    assert with_output == essence
    # but the user's annotations do: a reconcile request or a policy change
    requested = storage.build(body=body(big, {state.RECONCILE_REQUEST: "now"}))
    assert requested != essence and requested["metadata"]["annotations"] == {state.RECONCILE_REQUEST: "now"}

    patch = kopf.Patch()
    storage.store(body=body(big), patch=patch, essence=essence)
    stored = dict(patch["metadata"]["annotations"])
    key = f"{state.KOPF_PREFIX}/last-handled-configuration"
    assert key in stored and len(stored[key]) < 300
    assert storage.fetch(body=body(big, {key: stored[key]})) == essence
