"""ksqlDB's JSON outputs against their JSON Schema contracts (schemas/json/): each contract is exactly
what the ksql/ topology emits (value column names, JSON types, nullability), inferred from the SQL the
way ksqlDB types it; and the project's contract checker agrees with the jsonschema library."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from operators.ksql import statements
from operators.ksql.statements import Token, canonical_name, tokenize
from schemas import topics
from schemas.json_contract import ContractError, JsonContract
from schemas.topics import AVRO_DIR, JSON_DIR
from tests.support.ksql_text import select_span

KSQL_DIR = Path(__file__).resolve().parents[2] / "ksql"
TOPOLOGY = statements.load({p.name: p.read_text() for p in sorted(KSQL_DIR.glob("*.sql"))})
BY_NAME = TOPOLOGY.by_name()
JSON_TOPICS = [t for t in topics.ALL_TOPICS if t.value_format == "json"]
JSON_TYPE = {"STRING": "string", "INT": "integer", "INTEGER": "integer", "BIGINT": "integer",
             "DOUBLE": "number", "DECIMAL": "number", "BOOLEAN": "boolean",
             "TIMESTAMP": "integer"}  # ksqlDB's JSON serializer writes TIMESTAMP as epoch millis


# ---- a small typer for the expressions the topology uses ------------------------------------------------


class Col:
    def __init__(self, type_: str, nullable: bool, key: bool = False):
        self.type, self.nullable, self.key = type_, nullable, key

    def __repr__(self) -> str:
        return f"{self.type}{'?' if self.nullable else ''}{' KEY' if self.key else ''}"


def _split(toks: list[Token], sep: str = ",") -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "sym" and t.value in "(<":
            depth += 1
        elif t.kind == "sym" and t.value in ")>" and depth:
            depth -= 1
        if depth == 0 and t.kind == "sym" and t.value == sep:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def _avro_nullability(topic_name: str) -> dict[str, bool]:
    topic = topics.topic(topic_name)
    if topic.value_format != "avro":
        return {}
    schema = json.loads((AVRO_DIR / topic.schema_file).read_text())
    return {f["name"]: isinstance(f["type"], list) and "null" in f["type"] for f in schema["fields"]}


def columns_of(name: str) -> dict[str, Col]:
    """Output columns of a declared stream/table (key columns marked)."""
    src = BY_NAME[name]
    if not src.query:
        nullable = _avro_nullability(src.topic)
        return {c.name: Col(c.type.split("<")[0], nullable.get(c.name, True) and not c.key, c.key)
                for c in src.columns}
    return typed_projection(src)


def _from_clause(toks: list[Token]) -> dict[str | None, tuple[str, bool]]:
    """alias -> (source name, right side of a LEFT JOIN)."""
    ups = [t.upper for t in toks]
    i = ups.index("FROM") + 1
    out: dict[str | None, tuple[str, bool]] = {}
    left = False
    while i < len(toks):
        name = canonical_name(toks[i])
        alias = None
        if i + 1 < len(toks) and toks[i + 1].kind == "word" and ups[i + 1] not in {
                "LEFT", "JOIN", "INNER", "ON", "GROUP", "WHERE", "EMIT", "WINDOW", "PARTITION"}:
            alias = toks[i + 1].value
        out[alias] = (name, left)
        out.setdefault(None, (name, left))
        j = i + 1
        while j < len(toks) and ups[j] not in {"JOIN"}:
            if ups[j] in {"GROUP", "WHERE", "EMIT"}:
                return out
            j += 1
        if j >= len(toks):
            return out
        left = ups[j - 1] == "LEFT"
        i = j + 1
    return out


def type_of(toks: list[Token], scope: dict[str | None, tuple[str, bool]]) -> Col:
    first = toks[0]
    if first.upper == "CASE":
        branches, has_else = [], False
        depth, start, mode = 0, None, None
        for k, t in enumerate(toks[1:], 1):
            if t.upper == "CASE":
                depth += 1
            elif t.upper == "END" and depth:
                depth -= 1
            elif depth == 0 and t.upper in {"THEN", "ELSE", "WHEN", "END"}:
                if mode in {"THEN", "ELSE"}:
                    branches.append(type_of(toks[start:k], scope))
                mode, start = t.upper, k + 1
                has_else = has_else or t.upper == "ELSE"
        return Col(branches[0].type, (not has_else) or any(b.nullable for b in branches))
    if first.kind == "word" and len(toks) > 2 and toks[1].value == "(" and toks[-1].value == ")":
        fn = first.upper
        inner = toks[2:-1]
        if fn == "CAST":
            expr, target = _split_as(inner)
            return Col(target, type_of(expr, scope).nullable)
        args = _split(inner)
        if fn == "COUNT":
            return Col("BIGINT", False)
        arg = type_of(args[0], scope)
        if fn == "COALESCE":
            return Col(arg.type, all(type_of(a, scope).nullable for a in args))
        if fn == "LATEST_BY_OFFSET" and len(args) == 3:
            return Col("ARRAY", True)
        if fn in {"LATEST_BY_OFFSET", "SUM", "MAX", "MIN", "AS_VALUE"}:
            return Col(arg.type, arg.nullable)
        if fn == "UNIX_TIMESTAMP":
            return Col("BIGINT", arg.nullable)
        if fn == "ARRAY_LENGTH":
            return Col("INT", arg.nullable)
        raise AssertionError(f"the typer does not know {fn}: teach it")
    if len(toks) == 1 and first.kind == "word" and first.value[:1].isdigit():
        return Col("DOUBLE" if "." in first.value else "INT", False)
    if len(toks) == 1 and first.kind == "str":
        return Col("STRING", False)
    if len(toks) == 1 and first.upper in {"TRUE", "FALSE"}:
        return Col("BOOLEAN", False)
    if len(toks) <= 2 and toks[-1].kind == "qid":
        alias = toks[0].value.rstrip(".") if len(toks) == 2 else None
        source, right_of_left_join = scope[alias]
        col = columns_of(source)[toks[-1].value]
        return Col(col.type, col.nullable or right_of_left_join, col.key and not right_of_left_join)
    raise AssertionError(f"the typer does not know the expression {[t.value for t in toks]}: teach it")


def _split_as(toks: list[Token]) -> tuple[list[Token], str]:
    depth = 0
    for k, t in enumerate(toks):
        if t.value == "(":
            depth += 1
        elif t.value == ")":
            depth -= 1
        elif depth == 0 and t.upper == "AS":
            return toks[:k], toks[k + 1].upper
    raise AssertionError("CAST without AS")


def typed_projection(src: statements.Source) -> dict[str, Col]:
    toks = tokenize(src.text)
    start, end = select_span(toks)
    scope = _from_clause(toks[end:])
    out: dict[str, Col] = {}
    for item in _split(toks[start:end]):
        if len(item) >= 2 and item[-2].upper == "AS":
            expr, name = item[:-2], canonical_name(item[-1])
        else:
            expr, name = item, canonical_name(item[-1])
        col = type_of(expr, scope)
        # A bare reference to the source's key column is the output's key (not in the JSON value).
        out[name] = Col(col.type, col.nullable, key=col.key and len(expr) <= 2)
    return out


def emitted_value_columns(topic: topics.Topic) -> dict[str, tuple[str, bool]]:
    (src,) = [s for s in TOPOLOGY.sources if s.query and s.topic == topic.name]
    assert src.value_format == "JSON"
    return {name: (JSON_TYPE[c.type], c.nullable) for name, c in typed_projection(src).items() if not c.key}


# ---- the tests -------------------------------------------------------------------------------------------


def test_every_json_topic_has_a_json_schema_contract_and_every_file_a_topic():
    assert {t.json_schema_file for t in JSON_TOPICS} == {p.name for p in JSON_DIR.glob("*.json")}
    for topic in JSON_TOPICS:
        schema = topics.load_json_schema(topic.json_schema_file)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["title"] == topic.name
        assert all(p.get("description") for p in schema["properties"].values()), "every field documented"


@pytest.mark.parametrize("topic", JSON_TOPICS, ids=lambda t: t.name)
def test_the_contract_is_exactly_what_the_topology_emits(topic):
    contract = JsonContract.for_topic(topic)
    declared = {f.name: (next(iter(f.types - {"null"})), f.nullable) for f in contract.fields}
    emitted = emitted_value_columns(topic)
    assert sorted(declared) == sorted(emitted), "value column names"
    wrong = {n: (declared[n], emitted[n]) for n in declared if declared[n] != emitted[n]}
    assert wrong == {}, "(contract, topology) type and nullability per column"


def test_the_typer_sees_left_joins_coalesce_and_case_as_ksqldb_does():
    emitted = emitted_value_columns(topics.CUSTOMER_CONSOLIDATED)
    assert emitted["phone"] == ("string", True), "nullable in the Avro contract"
    assert emitted["first_name"] == ("string", False), "FROM the profile table: never null"
    assert emitted["activations_failed"] == ("integer", False), "COALESCE(..., 0) over a LEFT JOIN"
    assert emitted["last_order_at"] == ("integer", True), "CASE without ELSE"
    assert emitted["last_engagement_at"] == ("integer", True), "right side of a LEFT JOIN"
    assert "customer_key" not in emitted, "the key column is not in the value"
    enriched = emitted_value_columns(topics.ORDER_ENRICHED)
    assert enriched["first_name"] == ("string", True) and enriched["order_total"] == ("number", False)


SAMPLES = [
    {},
    {"customer_id": "c-1"},
    [1, 2],
    "text",
    None,
]


def _valid_consolidated() -> dict:
    return {"customer_id": "c-1", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
            "phone": None, "lifecycle_stage": "customer", "is_active": True, "created_at": 1, "profile_updated_at": 2,
            "lifetime_value": 10.5, "order_count": 1, "last_order_at": 3, "activations_delivered": 2,
            "activations_failed": 1, "activations_bounced": 0, "last_engagement_at": None}


def _variants() -> list[object]:
    base = _valid_consolidated()
    out: list[object] = [base, *SAMPLES]
    out.append({**base, "lifetime_value": 10})  # an integer is a number
    out.append({**base, "order_count": 2.0})  # 2.0 is an integer in JSON Schema
    out.append({**base, "order_count": 2.5})
    out.append({**base, "order_count": "2"})
    out.append({**base, "is_active": 1})
    out.append({**base, "first_name": None})
    out.append({**base, "delivered_count": 2})
    out.append({k: v for k, v in base.items() if k != "activations_bounced"})
    out.append({**base, "order_count": True})
    return out


@pytest.mark.parametrize("value", _variants(), ids=lambda v: json.dumps(v)[:60])
def test_the_checker_agrees_with_jsonschema(value):
    schema = topics.load_json_schema(topics.CUSTOMER_CONSOLIDATED.json_schema_file)
    valid = jsonschema.Draft202012Validator(schema).is_valid(value)
    record, problems = JsonContract.for_topic(topics.CUSTOMER_CONSOLIDATED).check(value)
    assert (problems == []) == valid
    if valid:
        assert record == value
        # typed as the contract says: integers as int, numbers as float
        assert type(record["order_count"]) is int and type(record["lifetime_value"]) is float


def test_mismatches_are_named_by_kind_and_an_unexpected_field_alone_keeps_the_record():
    contract = JsonContract.for_topic(topics.CUSTOMER_CONSOLIDATED)
    base = _valid_consolidated()
    record, problems = contract.check({**base, "delivered_count": 4})
    assert record is not None and "delivered_count" not in record and problems == ["unexpected field delivered_count"]
    old = {k: v for k, v in base.items() if k != "activations_delivered"}
    record, problems = contract.check({**old, "delivered_count": 4})
    assert record is None
    assert problems == ["missing field activations_delivered", "unexpected field delivered_count"]
    record, problems = contract.check({**base, "order_count": "3"})
    assert record is None and problems == ["field order_count: string where the contract says integer"]
    assert contract.check({**base, "order_count": 3.0})[0]["order_count"] == 3
    assert contract.check(["x"]) == (None, ["value is a JSON array, not an object"])


def test_a_contract_using_more_than_the_checker_enforces_is_refused():
    with pytest.raises(ContractError, match="field x uses"):
        JsonContract.from_schema({"title": "t", "type": "object", "properties": {"x": {"type": "string", "minLength": 3}},
                                  "required": ["x"]})
    with pytest.raises(ContractError, match="required must list every property"):
        JsonContract.from_schema({"title": "t", "type": "object", "properties": {"x": {"type": "string"}}})
