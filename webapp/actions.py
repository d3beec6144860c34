"""The actions a visitor sent (create customer, order, engagement), kept in their own signed session
cookie, not in Redis: the web UI never writes the cache. An action shows as "sent · waiting for the
pipeline" until the consolidated view reflects it (the customer appears; its order count or its
activation count grows), then "in the pipeline view" with the pipeline's numbers. A broken pipeline
therefore shows as actions that never arrive."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any

from webapp import model
from webapp.cache import CacheReader

KEPT = 8  # a session cookie holds about 4 KB


def activations(view: Mapping[str, Any]) -> int:
    # activations_failed counts every activation not delivered (failed or bounced)
    return int(view.get("activations_delivered") or 0) + int(view.get("activations_failed") or 0)


def remember(session: MutableMapping[str, Any], kind: str, customer_id: str, summary: str,
             before: int | None) -> dict[str, Any]:
    action = {"id": uuid.uuid4().hex[:12], "kind": kind, "customer_id": customer_id, "summary": summary[:160],
              "sent_ms": int(time.time() * 1000), "before": before}
    session["actions"] = [action, *list(session.get("actions") or [])][:KEPT]
    return action


def arrived(action: Mapping[str, Any], view: Mapping[str, Any] | None) -> bool:
    """Whether the pipeline's consolidated view reflects a sent action (never guessed by the UI)."""
    if view is None or not view.get("in_consolidated_view"):
        return False
    before = action.get("before") or 0
    if action.get("kind") == "order":
        return int(view.get("order_count") or 0) > before
    if action.get("kind") == "engagement":
        return activations(view) > before
    return True  # a created customer: it is in the view


def listed(session: Mapping[str, Any], cache: CacheReader, customer_id: str | None = None) -> list[dict[str, Any]]:
    """The session's actions (newest first) with their status: one Redis round trip."""
    actions = [dict(a) for a in session.get("actions") or [] if isinstance(a, dict)
               and model.valid_customer_id(a.get("customer_id"))
               and (customer_id is None or a.get("customer_id") == customer_id)]
    if not actions:
        return []
    views = cache.views(list(dict.fromkeys(a["customer_id"] for a in actions)))
    for action in actions:
        view = views.get(action["customer_id"])
        action["arrived"] = arrived(action, view)
        action["view"] = view if action["arrived"] else None
        action["sent_iso"] = model.iso(action.get("sent_ms"))
    return actions
