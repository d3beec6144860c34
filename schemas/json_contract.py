"""Records of ksqlDB's JSON topics checked against their JSON Schema contracts (``schemas/json/``).

The contracts use a small subset of JSON Schema 2020-12, the one a flat ksqlDB row needs: an
object with ``properties`` (each a ``type``: string, integer, number, boolean, optionally with
"null"), ``required`` and ``additionalProperties: false``. :meth:`JsonContract.from_schema`
refuses anything else, so a contract can never say more than this checker enforces (the runtime
image has no jsonschema package; ``tests/unit/test_ksql_json_contracts.py`` checks that this checker
and the jsonschema library agree on valid and invalid records).

What a check returns: the record with exactly the contract's fields, or None when it does not
match; and the mismatches as short *kinds* ("missing field x", "field x: string where the contract
says integer", "unexpected field x"), so a consumer can count and log each kind once. An unexpected
field alone does not reject the record (ksqlDB may append a column before the contract knows it;
nothing is guessed by ignoring it); a missing field, a null where none is allowed or a wrong type
does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas import topics

_TYPES = ("string", "integer", "number", "boolean", "null")
_ALLOWED_KEYWORDS = {"$schema", "$id", "title", "description", "type", "properties", "required",
                     "additionalProperties"}


class ContractError(ValueError):
    """A JSON Schema that uses more than the subset this checker enforces."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _conforms(value: Any, types: frozenset[str]) -> Any:
    """``value`` as the contract's type (a float with no fraction is an integer, as in JSON Schema),
    or the sentinel _NO when it does not conform."""
    kind = _json_type(value)
    if kind in types:
        return value
    if kind == "number" and "integer" in types and value.is_integer():
        return int(value)
    if kind == "integer" and "number" in types:
        return float(value)
    return _NO


_NO = object()


@dataclass(frozen=True)
class FieldSpec:
    name: str
    types: frozenset[str]

    @property
    def nullable(self) -> bool:
        return "null" in self.types

    @property
    def type_name(self) -> str:
        return " or ".join(t for t in _TYPES if t in self.types)


@dataclass(frozen=True)
class JsonContract:
    title: str
    fields: tuple[FieldSpec, ...]
    extra_allowed: bool

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> JsonContract:
        unknown = set(schema) - _ALLOWED_KEYWORDS
        if unknown or schema.get("type") != "object":
            raise ContractError(f"{schema.get('title')}: only flat objects are supported (got {sorted(unknown)})")
        fields = []
        for name, spec in schema.get("properties", {}).items():
            if set(spec) - {"type", "description"}:
                raise ContractError(f"{schema.get('title')}: field {name} uses {sorted(set(spec) - {'type', 'description'})}")
            raw = spec["type"]
            types = frozenset([raw] if isinstance(raw, str) else raw)
            if not types or not types <= set(_TYPES):
                raise ContractError(f"{schema.get('title')}: field {name} has type {raw!r}")
            fields.append(FieldSpec(name, types))
        required = set(schema.get("required", ()))
        if required != {f.name for f in fields}:
            # ksqlDB writes every column (nulls included): a contract lists them all as required.
            raise ContractError(f"{schema.get('title')}: required must list every property")
        return cls(str(schema.get("title")), tuple(fields), bool(schema.get("additionalProperties", True)))

    @classmethod
    def for_topic(cls, topic: topics.Topic) -> JsonContract:
        if topic.json_schema_file is None:
            raise ContractError(f"topic {topic.name} has no JSON Schema contract")
        return cls.from_schema(topics.load_json_schema(topic.json_schema_file))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def check(self, value: Any) -> tuple[dict[str, Any] | None, list[str]]:
        """(the record with exactly the contract's fields, or None when it does not match; mismatch kinds)."""
        if not isinstance(value, dict):
            return None, [f"value is a JSON {_json_type(value)}, not an object"]
        problems: list[str] = []
        record: dict[str, Any] = {}
        rejected = False
        for f in self.fields:
            if f.name not in value:
                problems.append(f"missing field {f.name}")
                rejected = True
                continue
            typed = _conforms(value[f.name], f.types)
            if typed is _NO:
                problems.append(f"field {f.name}: {_json_type(value[f.name])} where the contract says {f.type_name}")
                rejected = True
            else:
                record[f.name] = typed
        if not self.extra_allowed:
            known = set(self.names)
            problems += [f"unexpected field {name}" for name in value if name not in known]
        return (None if rejected else record), problems
