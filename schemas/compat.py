"""Avro BACKWARD compatibility: can a consumer holding the new schema read data written with the old?

Decided by fastavro's own schema resolution: records generated from the old (writer) schema are
encoded and decoded with the new schema as reader; any SchemaResolutionError means incompatible.
The generated records cover every branch of every union (fastavro's generator picks at random, so
we draw enough of them), which is what matters for resolution of added, removed and promoted fields.
"""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
from fastavro.utils import generate_many


def _parse(schema: str | dict[str, Any]) -> Any:
    raw = json.loads(schema) if isinstance(schema, str) else schema
    return fastavro.parse_schema(raw, _write_hint=False)


def backward_incompatibilities(new: str | dict[str, Any], old: str | dict[str, Any], samples: int = 64) -> list[str]:
    """Reasons data written with ``old`` cannot be read with ``new`` (empty: compatible)."""
    writer = _parse(old)
    reader = _parse(new)
    problems: list[str] = []
    for record in generate_many(writer, samples):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, writer, record)
        buf.seek(0)
        try:
            fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises SchemaResolutionError and friends
            reason = f"{type(exc).__name__}: {exc}"
            if reason not in problems:
                problems.append(reason)
    return problems


def is_backward_compatible(new: str | dict[str, Any], old: str | dict[str, Any]) -> bool:
    return not backward_incompatibilities(new, old)
