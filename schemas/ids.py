"""What a customer id can be: the one rule every entry point checks ids against (the web UI, the forget
request, the erasure job) before an id reaches a query, a Redis key or a Delta predicate."""

from __future__ import annotations

import re

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


def valid_customer_id(value: str | None) -> bool:
    return bool(value) and _ID_RE.fullmatch(value) is not None  # type: ignore[arg-type]
