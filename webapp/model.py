"""The customer view: its fields (the contracts' names, one per metric), the table's columns, and the
pure functions between cached strings and typed values.

Every field has the name its contract gives it, and the same name in ksqlDB, gold and the JSON API:

* ``dom.customer.consolidated.v1`` (ksqlDB, JSON, ``schemas/json/customer_consolidated.json``): profile,
  orders, lifetime value, activation counts and times.
* ``dom.propensity.score.v1`` (Spark, Avro): ``score``, ``model_version``, ``behavioural_stage``, ``scored_at``.
* ``dom.segment.materialized.v1`` (ksqlDB, Avro): ``segment``.

Derived here, and only here: ``name`` (first and last name), ``last_activity`` (the newest of the
customer's times) and ``in_consolidated_view``. Nothing is renamed or guessed: a record that does
not match its contract never reaches the cache (``webapp.records``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas import topics
from schemas.ids import valid_customer_id  # noqa: F401 - the web UI checks ids as model.valid_customer_id

MAX_ID_LENGTH = 64

# field -> kind ("str" | "int" | "float" | "ts" (epoch millis) | "bool"), by the topic that owns it
CONSOLIDATED_FIELDS: dict[str, str] = {
    "first_name": "str", "last_name": "str", "email": "str", "phone": "str", "lifecycle_stage": "str",
    "is_active": "bool", "created_at": "ts", "profile_updated_at": "ts", "lifetime_value": "float",
    "order_count": "int", "last_order_at": "ts", "activations_delivered": "int", "activations_failed": "int",
    "activations_bounced": "int", "last_engagement_at": "ts",
}
SCORE_FIELDS: dict[str, str] = {"score": "float", "model_version": "str", "behavioural_stage": "str", "scored_at": "ts"}
SEGMENT_FIELDS: dict[str, str] = {"segment": "str"}
FIELDS_BY_TOPIC: dict[str, dict[str, str]] = {
    topics.CUSTOMER_CONSOLIDATED.name: CONSOLIDATED_FIELDS,
    topics.PROPENSITY_SCORE.name: SCORE_FIELDS,
    topics.SEGMENT_MATERIALIZED.name: SEGMENT_FIELDS,
}
KIND: dict[str, str] = {name: kind for fields in FIELDS_BY_TOPIC.values() for name, kind in fields.items()}
STORED_FIELDS: tuple[str, ...] = tuple(KIND)
# The customer view the list, the detail and the JSON API all return (same keys everywhere).
VIEW_FIELDS: tuple[str, ...] = ("customer_id", "name", *STORED_FIELDS, "last_activity", "in_consolidated_view")
_ACTIVITY_TIMES = ("last_order_at", "last_engagement_at", "profile_updated_at", "created_at")

IN_VIEW = "_consolidated"  # internal hash field: set while the consolidated view has the customer
# What a customer view is read from (one HMGET per customer).
READ_FIELDS: tuple[str, ...] = (*STORED_FIELDS, IN_VIEW)

# Per-customer history kept in the customer's hash (JSON lists, newest first, bounded by HISTORY_MAX).
HISTORY_FIELDS = ("score_history", "segment_history", "recent_orders", "recent_engagements")


# ---- table columns ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str  # field, sort key in URLs and the API, index name
    title: str
    sort: str  # "lex" (text, case-insensitive) | "num"
    hint: str = ""


# In display order; the declared lifecycle stage is the 4th column as in the original design note.
COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "Customer", "lex"),
    Column("name", "Name", "lex"),
    Column("email", "Email", "lex"),
    Column("lifecycle_stage", "Declared stage", "lex"),
    Column("behavioural_stage", "Behavioural stage", "lex"),
    Column("order_count", "Orders", "num"),
    Column("lifetime_value", "Lifetime value", "num"),
    Column("activations_delivered", "Delivered", "num", "activations delivered"),
    Column("activations_failed", "Failed", "num", "activations not delivered: failed or bounced"),
    Column("segment", "Segment", "lex"),
    Column("score", "Propensity", "num", "propensity score"),
    Column("last_activity", "Last activity (UTC)", "num"),
)
COLUMN_BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}
DEFAULT_SORT = "last_activity"
DEFAULT_DIR = "desc"


# ---- stored strings <-> typed values ----------------------------------------------------------------------


def to_hash_value(kind: str, value: Any) -> str:
    if kind == "bool":
        return "1" if value else "0"
    if kind == "float":
        return repr(float(value))
    return str(value)


def from_hash_value(kind: str, raw: str) -> Any:
    if kind == "bool":
        return raw == "1"
    if kind in {"int", "ts"}:
        return int(raw)
    if kind == "float":
        return float(raw)
    return raw


def typed(fields: Mapping[str, str | None]) -> dict[str, Any]:
    """Typed stored fields (absent or None stays absent)."""
    return {name: from_hash_value(KIND[name], raw) for name, raw in fields.items() if raw is not None and name in KIND}


def last_activity(values: Mapping[str, Any]) -> int | None:
    stamps = [values[n] for n in _ACTIVITY_TIMES if values.get(n) is not None]
    return max(stamps) if stamps else None


def full_name(values: Mapping[str, Any]) -> str | None:
    return " ".join(p for p in (values.get("first_name"), values.get("last_name")) if p) or None


def customer_view(customer_id: str, raw: Mapping[str, str | None]) -> dict[str, Any]:
    """What the API and the templates get for one customer: every VIEW_FIELDS key (None when unknown)."""
    values = typed(raw)
    view: dict[str, Any] = {"customer_id": customer_id, "name": full_name(values)}
    for name in STORED_FIELDS:
        view[name] = values.get(name)
    view["last_activity"] = last_activity(values)
    view["in_consolidated_view"] = raw.get(IN_VIEW) is not None
    return view


def sort_value(column: Column, values: Mapping[str, Any]) -> str | float | None:
    """The value a column sorts by, from a customer's typed values; None = missing (sorts lowest)."""
    if column.key == "name":
        name = full_name(values)
        return name.lower() if name else None
    value = last_activity(values) if column.key == "last_activity" else values.get(column.key)
    if value is None:
        return None
    if column.sort == "num":
        return float(value)
    return str(value).lower()


def search_terms(customer_id: str, values: Mapping[str, Any]) -> list[str]:
    """Lower-case prefixes a search matches: each name, the full name, the email, its domain, the id."""
    first, last, email = values.get("first_name"), values.get("last_name"), values.get("email")
    terms = [customer_id.lower()]
    for part in (first, last):
        if part:
            terms.append(clean_text(part).lower())
    if first and last:
        terms.append(clean_text(f"{first} {last}").lower())
    if email:
        terms.append(clean_text(email).lower())
        if "@" in email:
            terms.append(clean_text(email.rsplit("@", 1)[1]).lower())
    seen: set[str] = set()
    return [t for t in terms if t and not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]


def clean_text(value: str) -> str:
    """Without control characters (they would break the index encodings) and surrounding space."""
    return "".join(ch for ch in value if ch >= " " and ch != "\x7f").strip()


def normalize_search(raw: str | None) -> str:
    """A search as the index stores terms: lower case, single spaces, no control characters."""
    text = clean_text(raw or "")
    return " ".join(text.lower().split())


def score_bucket(score: float, buckets: int = 10) -> int:
    """Histogram bucket of a propensity score in [0, 1] (1.0 falls in the last bucket)."""
    if not math.isfinite(score):
        return 0
    return min(buckets - 1, max(0, int(score * buckets)))


def iso(millis: int | None) -> str | None:
    if millis is None:
        return None
    try:
        return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None
