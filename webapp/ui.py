"""The HTML pages: the customer table, the detail view, the action forms and the live-refresh fragments."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from schemas import topics
from seed import events
from seed.publish import PublishError
from webapp import model
from webapp.cache import RedisError, engagement_total
from webapp.forms import (
    CreateCustomerForm,
    EngagementForm,
    ListQuery,
    OrderForm,
    form_errors,
    parse_list_query,
)
from webapp.runtime import Health, Runtime, _one_line

bp = Blueprint("ui", __name__)


def runtime() -> Runtime:
    return current_app.extensions["marketing_engine"]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _table(rt: Runtime, query: ListQuery) -> dict[str, Any]:
    """The table's template context; ``page`` is None (and ``error`` says why) when Redis is down."""
    try:
        return {"page": rt.cache.page(query.sort, query.direction, query.page, query.per_page, query.q),
                "error": None}
    except RedisError as exc:
        return {"page": None, "error": _one_line(exc)}


def _actions(rt: Runtime, customer_id: str | None = None) -> list[dict[str, Any]] | None:
    try:
        return rt.cache.actions(customer_id=customer_id)
    except RedisError:
        return None


def _meta(rt: Runtime, health: Health) -> dict[str, Any] | None:
    if not health.redis_ok:
        return None
    try:
        return rt.cache.meta()
    except RedisError:
        return None


def _index(form: CreateCustomerForm | None = None, messages: list[str] | None = None,
           status: int = 200) -> ResponseReturnValue:
    rt = runtime()
    query, problems = parse_list_query(request.args, rt.settings.page_size)
    health = rt.health()
    table = _table(rt, query)
    if table["page"] is None and status == 200:
        status = 503
    return render_template(
        "index.html", query=query, table=table, health=health, meta=_meta(rt, health),
        actions=_actions(rt), form=form or CreateCustomerForm(), form_messages=messages or [],
        query_problems=problems, columns=model.COLUMNS,
    ), status


@bp.get("/")
def index() -> ResponseReturnValue:
    return _index()


@bp.post("/customers")
def create_customer() -> ResponseReturnValue:
    rt = runtime()
    form = CreateCustomerForm()
    if not form.validate_on_submit():
        return _index(form, form_errors(form), 400)
    record = events.new_profile(
        rt.rng, _now_ms(), lifecycle_stage=form.choice(), first_name=form.first_name.data or None,
        last_name=form.last_name.data or None, email=form.email.data or None,
    )
    customer_id = record["customer_id"]
    try:
        rt.publish(topics.CUSTOMER_PROFILE, customer_id, record)
    except PublishError as exc:
        return _index(form, [f"Not sent: {exc}"], 503)
    summary = (f"create {record['first_name']} {record['last_name']} <{record['email']}> "
               f"declared {record['lifecycle_stage']}")
    _remember(rt, "customer", customer_id, topics.CUSTOMER_PROFILE, summary, None)
    flash(f"Sent: customer {record['first_name']} {record['last_name']} ({record['lifecycle_stage']}). "
          "It appears here once the pipeline has consolidated it.", "sent")
    return redirect(url_for("ui.customer", customer_id=customer_id), 303)


def _remember(rt: Runtime, kind: str, customer_id: str, topic: topics.Topic, summary: str,
              before: int | None) -> None:
    try:
        rt.record_action(kind, customer_id, topic, summary, before)
    except RedisError as exc:
        flash(f"The event was published, but Redis is unreachable so it is not listed as sent ({_one_line(exc)}).",
              "error")


def _customer_or_none(rt: Runtime, customer_id: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return rt.cache.customer(customer_id), None
    except RedisError as exc:
        return None, _one_line(exc)


def _detail(customer_id: str, order_form: OrderForm | None = None, engagement_form: EngagementForm | None = None,
            messages: list[str] | None = None, status: int = 200) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    rt = runtime()
    health = rt.health()
    found, error = _customer_or_none(rt, customer_id)
    actions = _actions(rt, customer_id)
    if error and status == 200:
        status = 503
    elif found is None and not actions and status == 200:
        status = 404
    return render_template(
        "customer.html", customer_id=customer_id, customer=found, error=error, actions=actions, health=health,
        order_form=order_form or OrderForm(), engagement_form=engagement_form or EngagementForm(),
        form_messages=messages or [], meta=_meta(rt, health),
    ), status


@bp.get("/customers/<customer_id>")
def customer(customer_id: str) -> ResponseReturnValue:
    return _detail(customer_id)


@bp.post("/customers/<customer_id>/orders")
def add_order(customer_id: str) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    rt = runtime()
    form = OrderForm()
    if not form.validate_on_submit():
        return _detail(customer_id, order_form=form, messages=form_errors(form), status=400)
    record = events.new_order(rt.rng, customer_id, _now_ms(), items=form.items())
    before = _counts(rt, customer_id)
    try:
        rt.publish(topics.ORDER_PLACED, customer_id, record)
    except PublishError as exc:
        return _detail(customer_id, order_form=form, messages=[f"Not sent: {exc}"], status=503)
    lines = ", ".join(f"{i['quantity']} x {i['sku']}" for i in record["items"])
    _remember(rt, "order", customer_id, topics.ORDER_PLACED,
              f"order {record['order_total']:.2f} {record['currency']} ({lines})",
              None if before is None else int(before.get("order_count") or 0))
    flash(f"Sent: order of {record['order_total']:.2f} {record['currency']}. The totals change when the "
          "pipeline has processed it.", "sent")
    return redirect(url_for("ui.customer", customer_id=customer_id), 303)


@bp.post("/customers/<customer_id>/engagements")
def add_engagement(customer_id: str) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    rt = runtime()
    form = EngagementForm()
    if not form.validate_on_submit():
        return _detail(customer_id, engagement_form=form, messages=form_errors(form), status=400)
    channel, outcome = form.picked()
    record = events.new_activation(rt.rng, customer_id, _now_ms(), channel=channel, status=outcome)
    before = _counts(rt, customer_id)
    try:
        rt.publish(topics.ACTIVATION_STATUS, customer_id, record)
    except PublishError as exc:
        return _detail(customer_id, engagement_form=form, messages=[f"Not sent: {exc}"], status=503)
    _remember(rt, "engagement", customer_id, topics.ACTIVATION_STATUS,
              f"engagement {record['channel']} {record['status']}",
              None if before is None else engagement_total(before))
    flash(f"Sent: {record['channel']} engagement, {record['status']}. The counts change when the pipeline has "
          "processed it.", "sent")
    return redirect(url_for("ui.customer", customer_id=customer_id), 303)


def _counts(rt: Runtime, customer_id: str) -> dict[str, Any] | None:
    try:
        return rt.cache.customer_counts(customer_id)
    except RedisError:
        return None


# ---- fragments for the live refresh (the same templates as the full pages) ----------------------------------------


@bp.get("/fragments/customers")
def fragment_customers() -> ResponseReturnValue:
    rt = runtime()
    query, _ = parse_list_query(request.args, rt.settings.page_size)
    table = _table(rt, query)
    return render_template("_table.html", query=query, table=table, columns=model.COLUMNS), \
        (200 if table["page"] is not None else 503)


@bp.get("/fragments/actions")
def fragment_actions() -> ResponseReturnValue:
    rt = runtime()
    customer_id = request.args.get("customer") or None
    if customer_id is not None and not model.valid_customer_id(customer_id):
        abort(404)
    actions = _actions(rt, customer_id)
    return render_template("_actions.html", actions=actions, single=customer_id is not None), \
        (200 if actions is not None else 503)


@bp.get("/fragments/status")
def fragment_status() -> ResponseReturnValue:
    rt = runtime()
    health = rt.health()
    return render_template("_status.html", health=health, meta=_meta(rt, health))


@bp.get("/fragments/customer/<customer_id>")
def fragment_customer(customer_id: str) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    rt = runtime()
    found, error = _customer_or_none(rt, customer_id)
    return render_template("_customer.html", customer=found, customer_id=customer_id, error=error), \
        (200 if error is None else 503)
