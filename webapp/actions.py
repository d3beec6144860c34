"""The actions a visitor sent (create customer, order, engagement), kept in their own signed session
cookie, not in Redis: the web UI never writes the cache. An action shows as "sent · waiting for the
pipeline" until the consolidated view reflects it (the customer appears; its order count or its
activation count grows), then "in the pipeline view" with the pipeline's numbers. A broken pipeline
therefore shows as actions that never arrive. Forgetting a customer drops its actions from the
session (``forget``; ``listed`` drops those of customers forgotten elsewhere)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from webapp import model
from webapp.cache import ERASED, CacheReader, customer_key

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


def forget(session: MutableMapping[str, Any], customer_id: str) -> int:
    """Drop every action of ``customer_id`` from the session (a created customer's summary holds the name
    and e-mail typed): the web UI's share of forgetting a customer. Returns how many were dropped."""
    stored = list(session.get("actions") or [])
    kept = [a for a in stored if not (isinstance(a, dict) and a.get("customer_id") == customer_id)]
    if len(kept) != len(stored):
        session["actions"] = kept
    return len(stored) - len(kept)


def erased(cache: CacheReader, ids: Sequence[str]) -> dict[str, int]:
    """Which of ``ids`` were forgotten (the feeder's ERASED marker), and when the erasure was requested
    (epoch ms): one read-only round trip."""
    if not ids:
        return {}
    pipe = cache.redis.pipeline(transaction=False)
    for customer_id in ids:
        pipe.hget(customer_key(customer_id), ERASED)
    found = zip(ids, pipe.execute(), strict=True)
    return {customer_id: int(at) for customer_id, at in found if at is not None and str(at).isdigit()}


def listed(session: MutableMapping[str, Any], cache: CacheReader,
           customer_id: str | None = None) -> list[dict[str, Any]]:
    """The session's actions (newest first) with their status: one Redis round trip, two when some
    customer is not in the view. Actions of a customer forgotten since they were sent (from another
    browser, or by ``make forget``) are dropped from the session here, the next time it is shown."""
    actions = [dict(a) for a in session.get("actions") or [] if isinstance(a, dict)
               and model.valid_customer_id(a.get("customer_id"))
               and (customer_id is None or a.get("customer_id") == customer_id)]
    if not actions:
        return []
    views = cache.views(list(dict.fromkeys(a["customer_id"] for a in actions)))
    gone = erased(cache, list(dict.fromkeys(a["customer_id"] for a in actions if a["customer_id"] not in views)))
    if gone:
        for forgotten in gone:
            forget(session, forgotten)
        actions = [a for a in actions if a["customer_id"] not in gone]
    for action in actions:
        view = views.get(action["customer_id"])
        action["arrived"] = arrived(action, view)
        action["view"] = view if action["arrived"] else None
        action["sent_iso"] = model.iso(action.get("sent_ms"))
    return actions
