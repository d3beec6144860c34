"""What the customer table shows and how each source topic's records map onto it (pure functions).

Every cached field is OWNED by exactly one source topic, so the three writers never overwrite each
other's fields:

* ``dom.customer.consolidated.v1`` (ksqlDB, JSON, UPPER-CASE column names, nulls): profile, orders,
  lifetime value, engagement, last activity.
* ``dom.propensity.score.v1`` (Spark, Avro): propensity score, model version, behavioural stage.
* ``dom.segment.materialized.v1`` (ksqlDB, Avro): segment.

The consolidated mapping is table-driven and tolerant: keys are lower-cased, each field accepts a
list of aliases (first one present wins), values are coerced to the field's kind, and anything that
cannot be coerced reads as null (the column shows "—") rather than failing the record.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas import topics

CONSOLIDATED = "consolidated"
PROPENSITY = "propensity"
SEGMENT = "segment"
SOURCE_BY_TOPIC: dict[str, str] = {
    topics.CUSTOMER_CONSOLIDATED.name: CONSOLIDATED,
    topics.PROPENSITY_SCORE.name: PROPENSITY,
    topics.SEGMENT_MATERIALIZED.name: SEGMENT,
}
CACHE_TOPICS = (topics.CUSTOMER_CONSOLIDATED, topics.PROPENSITY_SCORE, topics.SEGMENT_MATERIALIZED)

MAX_ID_LENGTH = 64
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


class Malformed(ValueError):
    """A record that cannot be cached (it is skipped and counted)."""


# ---- value coercion ------------------------------------------------------------------------------------


def _to_str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    # Control characters would break the index encodings (and never belong in a name or an email).
    text = "".join(ch for ch in text if ch >= " " and ch != "\x7f")
    return text or None


def _to_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _to_int(value: Any) -> int | None:
    number = _to_float(value)
    return None if number is None else int(number)


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.strip().lower() in {"true", "1", "yes"}
    return None


def to_millis(value: Any) -> int | None:
    """Epoch millis from what ksqlDB / Avro hand out: millis (int/float/numeric string), an aware or
    naive (UTC) datetime, or an ISO-8601 string."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(round(value.timestamp() * 1000))
    if isinstance(value, (int, float)):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return int(float(text))
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        return to_millis(parsed)
    return None


COERCE: dict[str, Callable[[Any], Any]] = {
    "str": _to_str, "int": _to_int, "float": _to_float, "ts": to_millis, "bool": _to_bool,
}


@dataclass(frozen=True)
class Field:
    name: str  # field in the customer hash and the API
    kind: str  # str | int | float | ts | bool
    aliases: tuple[str, ...]  # lower-case source keys; the first one present wins


# ksqlDB's consolidated view: names are the ksqlDB engineer's; the aliases absorb the likely spellings.
CONSOLIDATED_FIELDS: tuple[Field, ...] = (
    Field("first_name", "str", ("first_name", "firstname", "given_name")),
    Field("last_name", "str", ("last_name", "lastname", "family_name", "surname")),
    Field("email", "str", ("email", "email_address")),
    Field("phone", "str", ("phone", "phone_number")),
    Field("lifecycle_stage", "str", ("lifecycle_stage", "declared_lifecycle_stage", "declared_stage")),
    Field("is_active", "bool", ("is_active", "active")),
    Field("order_count", "int", ("order_count", "orders", "total_orders", "orders_count", "num_orders")),
    Field("lifetime_value", "float", (
        "lifetime_value", "ltv", "total_spend", "total_spent", "total_order_value", "orders_total", "revenue",
    )),
    Field("engagement_delivered", "int", (
        "engagement_delivered", "delivered_count", "activations_delivered", "delivered", "deliveries",
    )),
    Field("engagement_failed", "int", (
        "engagement_failed", "failed_count", "activations_failed", "failed", "failures",
    )),
    Field("engagement_bounced", "int", ("engagement_bounced", "bounced_count", "activations_bounced", "bounced")),
    Field("created_at", "ts", ("created_at", "customer_created_at")),
    Field("profile_updated_at", "ts", ("profile_updated_at", "updated_at")),
    Field("last_order_at", "ts", ("last_order_at", "last_order_ts", "last_order_placed_at", "last_order_time")),
    Field("last_engagement_at", "ts", (
        "last_engagement_at", "last_activation_at", "last_delivered_at", "last_delivery_at",
    )),
    Field("last_activity", "ts", ("last_activity", "last_activity_at", "last_activity_ts", "last_event_at")),
)
PROPENSITY_FIELDS: tuple[Field, ...] = (
    Field("propensity_score", "float", ("score", "propensity_score")),
    Field("model_version", "str", ("model_version",)),
    Field("behavioural_stage", "str", ("behavioural_stage", "behavioral_stage")),
    Field("scored_at", "ts", ("scored_at",)),
)
SEGMENT_FIELDS: tuple[Field, ...] = (Field("segment", "str", ("segment", "segment_name")),)
FIELDS_BY_SOURCE: dict[str, tuple[Field, ...]] = {
    CONSOLIDATED: CONSOLIDATED_FIELDS, PROPENSITY: PROPENSITY_FIELDS, SEGMENT: SEGMENT_FIELDS,
}
KIND_BY_FIELD: dict[str, str] = {
    f.name: f.kind for fields in FIELDS_BY_SOURCE.values() for f in fields
}
CUSTOMER_ID_ALIASES = ("customer_id", "customerid", "id", "rowkey")
_LAST_ACTIVITY_INPUTS = ("last_order_at", "last_engagement_at", "profile_updated_at", "created_at")


# ---- table columns ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str  # sort key in URLs and the API, and the index name
    title: str
    source: str  # the topic that owns the column's values
    sort: str  # "lex" (text, case-insensitive) | "num"


# In display order; the declared lifecycle stage is the 4th column as in the original design note.
COLUMNS: tuple[Column, ...] = (
    Column("customer_id", "Customer", CONSOLIDATED, "lex"),
    Column("name", "Name", CONSOLIDATED, "lex"),
    Column("email", "Email", CONSOLIDATED, "lex"),
    Column("lifecycle_stage", "Declared stage", CONSOLIDATED, "lex"),
    Column("behavioural_stage", "Behavioural stage", PROPENSITY, "lex"),
    Column("order_count", "Orders", CONSOLIDATED, "num"),
    Column("lifetime_value", "Lifetime value", CONSOLIDATED, "num"),
    Column("engagement_delivered", "Delivered", CONSOLIDATED, "num"),
    Column("engagement_failed", "Failed", CONSOLIDATED, "num"),
    Column("segment", "Segment", SEGMENT, "lex"),
    Column("propensity_score", "Propensity", PROPENSITY, "num"),
    Column("last_activity", "Last activity (UTC)", CONSOLIDATED, "num"),
)
COLUMN_BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}
DEFAULT_SORT = "last_activity"
DEFAULT_DIR = "desc"
# Fields a table row needs (one HMGET per row, all rows in one pipeline).
ROW_FIELDS: tuple[str, ...] = (
    "customer_id", "first_name", "last_name", "email", "lifecycle_stage", "behavioural_stage", "order_count",
    "lifetime_value", "engagement_delivered", "engagement_failed", "engagement_bounced", "segment",
    "propensity_score", "last_activity", "_seen_consolidated",
)


def sort_value(column: Column, fields: Mapping[str, Any]) -> str | float | None:
    """The value a column sorts by, from a customer's (coerced) fields; None = missing (sorts lowest)."""
    if column.key == "name":
        name = " ".join(p for p in (fields.get("first_name"), fields.get("last_name")) if p)
        return name.lower() or None
    value = fields.get(column.key)
    if value is None:
        return None
    if column.sort == "num":
        return float(value)
    return str(value).lower()


def search_terms(customer_id: str, fields: Mapping[str, Any]) -> list[str]:
    """Lower-case prefixes a search matches: each name, the full name, the email, its domain, the id."""
    first, last, email = fields.get("first_name"), fields.get("last_name"), fields.get("email")
    terms = [customer_id.lower()]
    for part in (first, last):
        if part:
            terms.append(part.lower())
    if first and last:
        terms.append(f"{first} {last}".lower())
    if email:
        terms.append(email.lower())
        if "@" in email:
            terms.append(email.rsplit("@", 1)[1].lower())
    seen: set[str] = set()
    return [t for t in terms if not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]


def normalize_search(raw: str | None) -> str:
    """A search as the index stores terms: lower case, single spaces, no control characters."""
    text = _to_str(raw)
    return " ".join(text.lower().split()) if text else ""


# ---- decoding source records -------------------------------------------------------------------------------


def valid_customer_id(value: str | None) -> bool:
    return bool(value) and _ID_RE.fullmatch(value) is not None  # type: ignore[arg-type]


def key_customer_id(key: bytes | None) -> str | None:
    """The customer id in a record key: a UTF-8 string (our convention), or a JSON string/object
    (what ksqlDB writes for a JSON key format)."""
    if not key:
        return None
    try:
        text = key.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if text[:1] in {'"', "{"}:
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        if isinstance(parsed, str):
            return parsed
        if isinstance(parsed, dict):
            found = _lookup({k.lower(): v for k, v in parsed.items()}, CUSTOMER_ID_ALIASES)
            return _to_str(found)
        return None
    return text


def _lookup(lowered: Mapping[str, Any], aliases: tuple[str, ...]) -> Any:
    for alias in aliases:
        if alias in lowered:
            return lowered[alias]
    return None


def map_record(source: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The owned fields of ``source`` from a decoded record: every owned field present, None = null."""
    lowered = {str(k).lower(): v for k, v in record.items()}
    out = {f.name: COERCE[f.kind](_lookup(lowered, f.aliases)) for f in FIELDS_BY_SOURCE[source]}
    if source == CONSOLIDATED and out["last_activity"] is None:
        stamps = [out[name] for name in _LAST_ACTIVITY_INPUTS if out[name] is not None]
        out["last_activity"] = max(stamps) if stamps else None
    return out


def record_customer_id(record: Mapping[str, Any]) -> str | None:
    return _to_str(_lookup({str(k).lower(): v for k, v in record.items()}, CUSTOMER_ID_ALIASES))


def decode_json_value(data: bytes) -> dict[str, Any]:
    """A ksqlDB JSON value (an object); Malformed when it is not one."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Malformed(f"JSON value is a {type(value).__name__}, expected an object")
    return value


def resolve_customer_id(key: bytes | None, record: Mapping[str, Any] | None) -> str:
    """The key's customer id (our topics are keyed by it), else the value's; Malformed when neither is
    a usable id."""
    customer_id = key_customer_id(key)
    if not customer_id and record is not None:
        customer_id = record_customer_id(record)
    if not valid_customer_id(customer_id):
        raise Malformed(f"no usable customer id (key {key[:80]!r})" if key else "no customer id")
    return customer_id  # type: ignore[return-value]


# ---- hash (de)serialization --------------------------------------------------------------------------------


def to_hash_value(kind: str, value: Any) -> str:
    if kind == "bool":
        return "1" if value else "0"
    if kind == "float":
        return repr(float(value))
    return str(value)


def from_hash(fields: Mapping[str, str | None]) -> dict[str, Any]:
    """Typed public fields from the strings stored in a customer hash (internal ``_`` fields dropped)."""
    out: dict[str, Any] = {}
    for name, raw in fields.items():
        if raw is None or name.startswith("_"):
            continue
        kind = KIND_BY_FIELD.get(name, "str")
        if kind == "bool":
            out[name] = raw == "1"
        elif kind in {"int", "ts"}:
            out[name] = _to_int(raw)
        elif kind == "float":
            out[name] = _to_float(raw)
        else:
            out[name] = raw
    return out


def customer_view(customer_id: str, raw: Mapping[str, str | None]) -> dict[str, Any]:
    """What the API and the templates get for one customer."""
    fields: dict[str, Any] = {name: None for name in KIND_BY_FIELD}
    fields.update(from_hash(raw))
    fields["customer_id"] = customer_id
    name = " ".join(p for p in (fields.get("first_name"), fields.get("last_name")) if p)
    fields["name"] = name or None
    for stamp in ("last_activity", "created_at", "profile_updated_at", "last_order_at", "last_engagement_at",
                  "scored_at"):
        if fields.get(stamp) is not None:
            fields[f"{stamp}_iso"] = iso(fields[stamp])
    fields["in_consolidated_view"] = raw.get("_seen_consolidated") is not None
    return fields


def iso(millis: int | None) -> str | None:
    if millis is None:
        return None
    try:
        return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None
