"""The HTML pages: the customer table, the customer page, the insights page, the action forms and the
live-refresh fragments. Every page reads only Redis (the web UI never writes it)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from common.errors import one_line
from forget import request as erasure
from schemas import topics
from seed import events
from seed.publish import PublishError
from webapp import actions as sent
from webapp import model
from webapp.cache import Insights, RedisError
from webapp.forms import (
    CreateCustomerForm,
    EngagementForm,
    ForgetForm,
    ListQuery,
    OrderForm,
    form_errors,
    parse_list_query,
)
from webapp.records import FEED_TOPICS
from webapp.runtime import Runtime

bp = Blueprint("ui", __name__)

# What each topic the feeder reads is, for the pipeline-health panel.
TOPIC_ROLES = {
    topics.CUSTOMER_CONSOLIDATED.name: "consolidated view (ksqlDB, JSON)",
    topics.PROPENSITY_SCORE.name: "propensity scores (Spark score, Avro)",
    topics.SEGMENT_MATERIALIZED.name: "segment changes (ksqlDB, Avro)",
    topics.ORDER_ENRICHED.name: "enriched orders (ksqlDB, JSON)",
    topics.ACTIVATION_STATUS.name: "activation outcomes (source, Avro)",
    topics.CONSISTENCY.name: "consistency reports (python -m consistency, Avro)",
    topics.CUSTOMER_ERASURE.name: "erasure requests (python -m forget, the web UI; Avro)",
}
SPARK_LAYERS = ("bronze", "silver", "gold", "score")


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
        return {"page": None, "error": one_line(exc)}


def _actions(rt: Runtime, customer_id: str | None = None) -> list[dict[str, Any]] | None:
    try:
        return sent.listed(session, rt.cache, customer_id)
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
        "index.html", query=query, table=table, health=health, actions=_actions(rt),
        form=form or CreateCustomerForm(), form_messages=messages or [], query_problems=problems,
        columns=model.COLUMNS,
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
    sent.remember(session, "customer", customer_id,
                  f"create {record['first_name']} {record['last_name']} <{record['email']}> "
                  f"declared {record['lifecycle_stage']}", None)
    flash(f"Sent: customer {record['first_name']} {record['last_name']} ({record['lifecycle_stage']}). "
          "It appears here once the pipeline has consolidated it.", "sent")
    return redirect(url_for("ui.customer", customer_id=customer_id), 303)


def _customer(rt: Runtime, customer_id: str) -> dict[str, Any]:
    """The customer page's context. ``known``: the cache holds something of the customer (what forgetting
    erases); ``erased_at`` (epoch ms): it was forgotten (the feeder keeps only that marker, and the page
    says so instead of "not in the view yet")."""
    try:
        view, history = rt.cache.customer(customer_id)
        erased_at = sent.erased(rt.cache, [customer_id]).get(customer_id) if view is None else None
        return {"customer": view, "history": history, "error": None, "erased_at": erased_at,
                "known": view is not None or any(history.values())}
    except RedisError as exc:
        return {"customer": None, "history": None, "error": one_line(exc), "erased_at": None, "known": False}


def _detail(customer_id: str, order_form: OrderForm | None = None, engagement_form: EngagementForm | None = None,
            messages: list[str] | None = None, status: int = 200) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    rt = runtime()
    health = rt.health()
    found = _customer(rt, customer_id)
    actions = _actions(rt, customer_id)
    history = found["history"] or {}
    if found["error"] and status == 200:
        status = 503
    elif found["customer"] is None and not actions and not any(history.values()) and status == 200:
        status = 404
    return render_template(
        "customer.html", customer_id=customer_id, **found, actions=actions, health=health,
        order_form=order_form or OrderForm(), engagement_form=engagement_form or EngagementForm(),
        form_messages=messages or [],
    ), status


@bp.get("/customers/<customer_id>")
def customer(customer_id: str) -> ResponseReturnValue:
    return _detail(customer_id)


def _view_or_none(rt: Runtime, customer_id: str) -> dict[str, Any] | None:
    try:
        return rt.cache.views([customer_id]).get(customer_id)
    except RedisError:
        return None


@bp.post("/customers/<customer_id>/orders")
def add_order(customer_id: str) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    rt = runtime()
    form = OrderForm()
    if not form.validate_on_submit():
        return _detail(customer_id, order_form=form, messages=form_errors(form), status=400)
    record = events.new_order(rt.rng, customer_id, _now_ms(), items=form.items())
    before = _view_or_none(rt, customer_id)
    try:
        rt.publish(topics.ORDER_PLACED, customer_id, record)
    except PublishError as exc:
        return _detail(customer_id, order_form=form, messages=[f"Not sent: {exc}"], status=503)
    lines = ", ".join(f"{i['quantity']} x {i['sku']}" for i in record["items"])
    sent.remember(session, "order", customer_id, f"order {record['order_total']:.2f} {record['currency']} ({lines})",
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
    before = _view_or_none(rt, customer_id)
    try:
        rt.publish(topics.ACTIVATION_STATUS, customer_id, record)
    except PublishError as exc:
        return _detail(customer_id, engagement_form=form, messages=[f"Not sent: {exc}"], status=503)
    sent.remember(session, "engagement", customer_id, f"engagement {record['channel']} {record['status']}",
                  None if before is None else sent.activations(before))
    flash(f"Sent: {record['channel']} engagement, {record['status']}. The counts change when the pipeline has "
          "processed it.", "sent")
    return redirect(url_for("ui.customer", customer_id=customer_id), 303)


# ---- forgetting a customer (issue 17; docs/forget.md) --------------------------------------------------------------


def _forget_page(customer_id: str, form: ForgetForm | None = None, messages: list[str] | None = None,
                 status: int = 200) -> ResponseReturnValue:
    """The confirmation page; 404 for an id the cache does not know, 503 while Redis is down (nothing can
    be checked, so nothing is offered)."""
    rt = runtime()
    found = _customer(rt, customer_id)
    if found["error"] and status == 200:
        status = 503
    elif found["erased_at"] is None and not found["known"] and status == 200:
        status = 404
    return render_template("forget.html", customer_id=customer_id, **found, health=rt.health(),
                           form=form or ForgetForm(), form_messages=messages or [], topics=topics), status


@bp.get("/customers/<customer_id>/forget")
def forget(customer_id: str) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    return _forget_page(customer_id)


@bp.post("/customers/<customer_id>/forget")
def forget_confirmed(customer_id: str) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    rt = runtime()
    form = ForgetForm()
    if not form.validate_on_submit():
        return _forget_page(customer_id, form, form_errors(form), 400)
    found = _customer(rt, customer_id)
    if found["error"] or found["erased_at"] is not None:
        # Redis down: the page says so. Already forgotten: asking again sends nothing (each store has
        # erased it; `make forget` can still re-send both records).
        return _forget_page(customer_id)
    if not found["known"]:
        return _forget_page(customer_id)  # 404 with the reason
    if not form.confirms(customer_id):
        form.confirm.data = ""
        return _forget_page(customer_id, form, [f"Confirmation: type the customer id {customer_id} exactly. "
                                                "Nothing was sent."], 400)
    record = erasure.build(customer_id, requested_by="webapp")
    try:
        rt.publish(topics.CUSTOMER_ERASURE, customer_id, record)
    except PublishError as exc:
        return _forget_page(customer_id, form, [f"Not sent: {exc}"], 503)
    sent.forget(session, customer_id)
    flash(f"erasure of customer {customer_id} requested (request {record['request_id']}). It leaves this table "
          "once the feeder has read the request.", "sent")
    # ksqlDB keeps an aggregated profile after a tombstone (confluentinc/ksql#6938): a newer, redacted
    # profile overwrites it. After the request, so a reader of the profile finds why it was sent.
    try:
        rt.publish(topics.CUSTOMER_PROFILE, customer_id, erasure.redacted_profile(record))
    except PublishError as exc:
        flash(f"The redacted profile for ksqlDB was not sent ({exc}): its view keeps the customer's name and "
              f"e-mail until `make forget CUSTOMER={customer_id}` sends it.", "error")
    return redirect(url_for("ui.index"), 303)


# ---- insights ----------------------------------------------------------------------------------------------------


def insights_context(rt: Runtime) -> dict[str, Any]:
    """The insights page's data (``insights`` None and ``error`` set when Redis is down)."""
    try:
        found: Insights | None = rt.cache.insights()
        error = None
    except RedisError as exc:
        found, error = None, one_line(exc)
    pipeline = []
    if found is not None and found.feeder is not None:
        for topic in FEED_TOPICS:
            t = found.feeder.topics.get(topic.name)
            pipeline.append({"topic": topic.name, "role": TOPIC_ROLES[topic.name], "status": t})
    return {"insights": found, "error": error, "pipeline": pipeline, "spark_layers": spark_layers(found),
            "topic_roles": TOPIC_ROLES, "duration": duration}


def spark_layers(found: Insights | None) -> list[dict[str, Any]]:
    """Per Spark layer its queries' newest committed batches (from the feeder's status; the page shows
    "nothing published" for a layer none of whose queries has reported)."""
    layers = found.feeder.layers if found is not None and found.feeder is not None else {}
    return [{"layer": name, "queries": sorted((q for q in layers.values() if q.job == name), key=lambda q: q.query)}
            for name in SPARK_LAYERS]


def duration(ms: int | None) -> str:
    """A lag like '850 ms', '4.2 s', '3 min 5 s', '2 h 10 min', '3 d 4 h' (negative: clocks disagree)."""
    if ms is None:
        return "—"
    sign, ms = ("-" if ms < 0 else ""), abs(ms)
    if ms < 1000:
        return f"{sign}{ms} ms"
    if ms < 60_000:
        return f"{sign}{ms / 1000:.1f} s"
    s = ms // 1000
    for unit, size, sub, sub_size in (("d", 86_400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if s >= size:
            return f"{sign}{s // size} {unit} {s % size // sub_size} {sub}"
    return f"{sign}{s} s"


@bp.get("/insights")
def insights() -> ResponseReturnValue:
    rt = runtime()
    health = rt.health()
    context = insights_context(rt)
    return render_template("insights.html", health=health, **context), (200 if context["error"] is None else 503)


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
    return render_template("_status.html", health=runtime().health())


@bp.get("/fragments/customer/<customer_id>")
def fragment_customer(customer_id: str) -> ResponseReturnValue:
    if not model.valid_customer_id(customer_id):
        abort(404)
    found = _customer(runtime(), customer_id)
    return render_template("_customer.html", customer_id=customer_id, **found), \
        (200 if found["error"] is None else 503)


@bp.get("/fragments/insights")
def fragment_insights() -> ResponseReturnValue:
    context = insights_context(runtime())
    return render_template("_insights.html", **context), (200 if context["error"] is None else 503)
