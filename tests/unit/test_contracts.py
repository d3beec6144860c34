"""Avro contracts and the topic registry: every schema well-formed, documented, and BACKWARD-compatible
with its previous committed version."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fastavro
import pytest

from schemas import compat, topics
from schemas.topics import AVRO_DIR

SCHEMA_FILES = sorted(p.name for p in AVRO_DIR.glob("*.avsc"))
HISTORY = AVRO_DIR / "history"


def _fields(schema: dict) -> list[dict]:
    """Every field of every record, nested ones included."""
    out: list[dict] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "record":
                for f in node["fields"]:
                    out.append(f)
                    walk(f["type"])
            elif node.get("type") == "array":
                walk(node["items"])
        elif isinstance(node, list):
            for branch in node:
                walk(branch)

    walk(schema)
    return out


def test_every_avro_topic_has_a_schema_file_and_every_file_a_topic():
    avro_topics = {t.schema_file for t in topics.ALL_TOPICS if t.value_format == "avro"}
    assert avro_topics == set(SCHEMA_FILES)


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_parses_and_is_documented(name: str):
    schema = json.loads((AVRO_DIR / name).read_text())
    fastavro.parse_schema(schema)
    assert schema["namespace"].startswith("io.marketingengine."), "every schema has a project namespace"
    assert schema.get("doc")
    for field in _fields(schema):
        assert field.get("doc"), f"{name}: field {field['name']} has no doc"
        ftype = field["type"]
        if re.search(r"_at$", field["name"]):
            inner = ftype if isinstance(ftype, dict) else next(b for b in ftype if b != "null")
            assert inner == {"type": "long", "logicalType": "timestamp-millis"}, (
                f"{name}: {field['name']} must be long timestamp-millis"
            )
        if isinstance(ftype, list):
            assert ftype[0] == "null" and field.get("default", "missing") is None, (
                f"{name}: optional field {field['name']} must be ['null', T] with default null"
            )


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_current_schema_is_the_newest_committed_version(name: str):
    versions = sorted(HISTORY.joinpath(name[:-5]).glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
    assert versions, f"{name}: add schemas/avro/history/{name[:-5]}/v1.avsc"
    assert json.loads((AVRO_DIR / name).read_text()) == json.loads(versions[-1].read_text()), (
        f"{name} changed: copy it to a new history version so the change is checked for compatibility"
    )


def _version_pairs() -> list[tuple[Path, Path]]:
    pairs = []
    for folder in sorted(HISTORY.iterdir()):
        versions = sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
        pairs += list(zip(versions, versions[1:], strict=False))
    return pairs


@pytest.mark.parametrize("old,new", _version_pairs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_version_is_backward_compatible_with_the_previous(old: Path, new: Path):
    assert compat.backward_incompatibilities(new.read_text(), old.read_text()) == []


def test_there_is_at_least_one_evolution_to_check():
    assert _version_pairs(), "the compatibility test must have a real pair to check"


def test_compat_check_rejects_incompatible_changes():
    base = json.loads(topics.ORDER_PLACED.schema_str)
    added_required = json.loads(json.dumps(base))
    added_required["fields"].append({"name": "coupon", "type": "string", "doc": "x"})
    retyped = json.loads(json.dumps(base))
    next(f for f in retyped["fields"] if f["name"] == "order_total")["type"] = "string"
    added_optional = json.loads(json.dumps(base))
    added_optional["fields"].append({"name": "coupon", "type": ["null", "string"], "default": None, "doc": "x"})
    removed = json.loads(json.dumps(base))
    removed["fields"] = [f for f in removed["fields"] if f["name"] != "channel"]
    assert not compat.is_backward_compatible(added_required, base)
    assert not compat.is_backward_compatible(retyped, base)
    assert compat.is_backward_compatible(added_optional, base)
    assert compat.is_backward_compatible(removed, base)  # a reader may ignore a field the writer had


def test_topic_registry():
    names = [t.name for t in topics.ALL_TOPICS]
    assert len(names) == len(set(names))
    for t in topics.ALL_TOPICS:
        assert re.fullmatch(r"dom(\.[a-z]+)+\.v\d+", t.name), t.name
        assert t.subject == f"{t.name}-value"
        assert t.value_format in {"avro", "json", "bytes"}
    assert topics.topic("dom.order.placed.v1") is topics.ORDER_PLACED
    with pytest.raises(KeyError, match="unknown topic"):
        topics.topic("dom.nope.v1")
