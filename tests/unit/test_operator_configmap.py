"""Rendering ksql/ as the labelled ConfigMap the operator watches."""

from __future__ import annotations

from pathlib import Path

import yaml

from operators.ksql import configmap, state, statements
from operators.ksql.settings import OperatorSettings

KSQL_DIR = Path(__file__).resolve().parents[2] / "ksql"


def test_manifest_round_trips_the_sql_byte_for_byte_and_carries_the_label(capsys):
    assert configmap.main([str(KSQL_DIR), "--namespace", "ns1", "--deletion-policy", "drop"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    files = {p.name: p.read_text() for p in KSQL_DIR.glob("*.sql")}
    assert doc["data"] == files, "only .sql keys, unchanged"
    assert statements.content_hash(doc["data"]) == statements.content_hash(files)
    meta = doc["metadata"]
    assert meta["namespace"] == "ns1" and meta["annotations"] == {state.DELETION_POLICY: "drop"}
    assert OperatorSettings.from_env({}).selects(meta["labels"], "ns1"), "the default operator picks it up"


def test_text_with_trailing_spaces_survives():
    doc = configmap.manifest({"a.sql": "CREATE STREAM A AS SELECT * FROM B;   \n\n  "}, name="n", namespace="ns",
                             label="example.com/ksql")
    assert yaml.safe_load(configmap.dump(doc))["data"] == {"a.sql": "CREATE STREAM A AS SELECT * FROM B;   \n\n  "}
    assert doc["metadata"]["labels"]["example.com/ksql"] == "true" and "annotations" not in doc["metadata"]


def test_files_the_operator_would_refuse_are_not_rendered(tmp_path, capsys):
    (tmp_path / "010-x.sql").write_text("TERMINATE ALL;")
    assert configmap.main([str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "TERMINATE ALL is not supported" in captured.err
