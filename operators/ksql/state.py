"""What the operator keeps on a KSQL ConfigMap: annotations only, and only small ones.

kopf stores its own state in annotations, and a large object can overflow the 256 KiB annotation
limit and jam deletion (kopf issue 1087). So neither kopf nor the operator ever stores the content:

``ksql.marketing-engine.io/applied-hash``
    SHA-256 of the ``*.sql`` data last applied completely (absent until the first full success).
``ksql.marketing-engine.io/state``
    compact JSON: one ``[object, file#statement, digest, outcome]`` per declared statement (the
    digest is the first 16 hex characters of the normalized statement's SHA-256), plus the last
    error message (truncated). Never the statements themselves.
``ksql.marketing-engine.io/deletion-policy`` (set by the user)
    ``keep`` (default) or ``drop``: what happens to the ksqlDB objects when the ConfigMap is deleted
    or a statement is removed from it.
``ksql.marketing-engine.io/reconcile-request`` (set by the drift check, or by hand)
    any new value makes the operator re-plan against the live server at once.

kopf's own bookkeeping lives under ``kopf.marketing-engine.io/``; its diff base stores a digest of
``data``/``binaryData`` instead of the data (:class:`DigestDiffBaseStorage`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from operators.ksql.planner import Record

PREFIX = "ksql.marketing-engine.io"
APPLIED_HASH = f"{PREFIX}/applied-hash"
STATE = f"{PREFIX}/state"
DELETION_POLICY = f"{PREFIX}/deletion-policy"
RECONCILE_REQUEST = f"{PREFIX}/reconcile-request"
KOPF_PREFIX = "kopf.marketing-engine.io"
FINALIZER = f"{PREFIX}/drop-objects"
POLICIES = ("keep", "drop")
STATE_VERSION = 1
MAX_STATE_BYTES = 128 * 1024  # well under the 256 KiB budget shared by all annotations
MAX_ERROR_CHARS = 500

# Annotations that are the operator's output, not the user's input: never part of kopf's diff base.
OUTPUT_ANNOTATIONS = (APPLIED_HASH, STATE)


class StateTooLarge(ValueError):
    pass


def deletion_policy(annotations: Mapping[str, str]) -> str:
    raw = (annotations.get(DELETION_POLICY) or "keep").strip().lower()
    return raw if raw in POLICIES else "keep"


def policy_is_valid(annotations: Mapping[str, str]) -> bool:
    raw = annotations.get(DELETION_POLICY)
    return raw is None or raw.strip().lower() in POLICIES


def encode(records: Iterable[Record], error: str | None = None) -> str:
    doc: dict[str, Any] = {"v": STATE_VERSION, "s": [[r.name, r.ref, r.digest, r.outcome] for r in records]}
    if error:
        doc["e"] = error[:MAX_ERROR_CHARS]
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_STATE_BYTES:
        raise StateTooLarge(
            f"the per-statement state would take {len(text.encode())} bytes (limit {MAX_STATE_BYTES}): "
            "split this ConfigMap into several"
        )
    return text


def decode(annotations: Mapping[str, str]) -> tuple[dict[str, Record], str | None]:
    """Stored records by object name (in stored order) and the last error. Garbage reads as empty:
    the planner then compares against the live server only (objects found there are adopted)."""
    raw = annotations.get(STATE)
    if not raw:
        return {}, None
    try:
        doc = json.loads(raw)
        if doc.get("v") != STATE_VERSION:
            return {}, None
        records = {}
        for name, ref, digest, outcome in doc.get("s", []):
            records[str(name)] = Record(str(name), str(ref), str(digest), str(outcome))
        return records, doc.get("e")
    except (ValueError, TypeError, AttributeError):
        return {}, None


def data_digest(body: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    for stanza in ("data", "binaryData"):
        for key, value in sorted((body.get(stanza) or {}).items()):
            h.update(f"{stanza}\0{key}\0".encode())
            h.update(str(value).encode())
            h.update(b"\0")
    return h.hexdigest()


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, with ``data``/``binaryData`` replaced by their digest and the
    operator's output annotations left out: a change of content or of a user annotation still
    triggers the update handler, but the stored essence stays a few hundred bytes whatever the size
    of the ConfigMap (kopf issue 1087)."""

    def build(self, *, body, extra_fields=None):  # type: ignore[no-untyped-def,override]
        essence = super().build(body=body, extra_fields=extra_fields)
        had_data = "data" in essence or "binaryData" in essence
        essence.pop("data", None)  # type: ignore[misc]
        essence.pop("binaryData", None)  # type: ignore[misc]
        if had_data:
            essence["data-sha256"] = data_digest(body)  # type: ignore[typeddict-unknown-key]
        self.remove_annotations(essence, set(OUTPUT_ANNOTATIONS))
        self.remove_empty_stanzas(essence)
        return essence
