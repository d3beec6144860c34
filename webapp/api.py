"""JSON API: /api/customers (paging, sort, search), /api/customers/<id> (the same fields as a list item),
/api/customers/<id>/history, /api/insights (every number of the insights page), /api/status (live refresh)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from common.errors import one_line
from webapp import model
from webapp.cache import RedisError
from webapp.forms import parse_list_query
from webapp.runtime import Runtime

bp = Blueprint("api", __name__, url_prefix="/api")


def runtime() -> Runtime:
    from flask import current_app

    return current_app.extensions["marketing_engine"]


def unavailable(exc: BaseException) -> ResponseReturnValue:
    return jsonify({"error": "redis unavailable", "reason": f"Redis is unreachable: {one_line(exc)}"}), 503, \
        {"Retry-After": "2"}


def invalid_id() -> ResponseReturnValue:
    return jsonify({"error": "invalid customer id", "reason": "ids are 1-64 letters, digits, _ . : -"}), 400


@bp.get("/customers")
def customers() -> ResponseReturnValue:
    rt = runtime()
    query, errors = parse_list_query(request.args, rt.settings.page_size)
    if errors:
        return jsonify({"error": "invalid parameters", "reasons": errors}), 400
    try:
        page = rt.cache.page(query.sort, query.direction, query.page, query.per_page, query.q)
    except RedisError as exc:
        return unavailable(exc)
    return jsonify(page.as_json())


@bp.get("/customers/<customer_id>")
def customer(customer_id: str) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        return invalid_id()
    try:
        found, _ = runtime().cache.customer(customer_id)
    except RedisError as exc:
        return unavailable(exc)
    if found is None:
        return jsonify({"error": "not found", "reason": f"customer {customer_id} is not in the cache"}), 404
    return jsonify(found)


@bp.get("/customers/<customer_id>/history")
def history(customer_id: str) -> ResponseReturnValue:
    """Score history, segment changes, recent orders and engagements (newest first, bounded per customer)."""
    if not model.valid_customer_id(customer_id):
        return invalid_id()
    try:
        _, found = runtime().cache.customer(customer_id)
    except RedisError as exc:
        return unavailable(exc)
    return jsonify({"customer_id": customer_id, **found})


@bp.get("/insights")
def insights() -> ResponseReturnValue:
    try:
        found = runtime().cache.insights()
    except RedisError as exc:
        return unavailable(exc)
    body = found.as_json()
    body["feeder"] = None if found.feeder is None else found.feeder.as_json()
    return jsonify(body)


@bp.get("/status")
def status() -> ResponseReturnValue:
    """What the live refresh polls: the cache version (bumped per written batch) and the health."""
    health = runtime().health()
    return jsonify(health.as_json()), (200 if health.redis_ok else 503)
