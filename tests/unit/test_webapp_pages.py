"""The app without its dependencies (Redis on a closed port; the app has no Kafka consumer): it says so plainly, answers
503 with a reason, validates before touching Redis, and its pages hold no inline script or CDN link.
No process is started; the forms are checked in a request context."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webapp.forms import CreateCustomerForm, ListQuery, OrderForm, form_errors, parse_list_query

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"


def test_the_page_says_plainly_that_redis_is_down_and_keeps_working(app):
    client = app.test_client()
    response = client.get("/")
    assert response.status_code == 503
    html = response.get_data(as_text=True)
    assert "Redis is down." in html and "recovers by itself" in html
    assert "Customer data is unavailable" in html
    assert 'name="csrf_token"' in html  # the forms are still there
    for path in ("/fragments/customers", "/api/customers", "/api/customers/c-1", "/api/status", "/insights",
                 "/fragments/insights", "/api/insights", "/api/customers/c-1/history", "/customers/c-1"):
        assert client.get(path).status_code == 503, path
    body = client.get("/api/customers").get_json()
    assert body["error"] == "redis unavailable" and body["reason"].startswith("Redis is unreachable")


def test_probes_liveness_never_depends_on_redis_readiness_does(app):
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["ready"] is False
    assert any(r.startswith("Redis is unreachable") for r in ready.get_json()["reasons"])


def test_invalid_api_parameters_are_400_with_reasons_before_redis_is_asked(app):
    client = app.test_client()
    response = client.get("/api/customers?sort=nope&dir=up&page=0&per_page=500&q=" + "x" * 101)
    assert response.status_code == 400
    reasons = response.get_json()["reasons"]
    assert len(reasons) == 5
    assert any("sort must be one of" in r for r in reasons)
    assert client.get("/api/customers/has%20space").status_code == 400
    assert client.get("/api/nothing").get_json()["error"] == "not found"


def test_a_post_without_the_csrf_token_is_refused(app):
    response = app.test_client().post("/customers", data={"first_name": "Eve"})
    assert response.status_code == 400
    assert "reload the page" in response.get_data(as_text=True)


def test_security_headers_on_every_response(app):
    client = app.test_client()
    for path in ("/", "/healthz", "/api/customers", "/static/app.css", "/missing"):
        headers = client.get(path).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
    assert client.get("/api/customers").headers["Cache-Control"] == "no-store"


def test_templates_have_no_inline_script_style_handler_or_external_resource():
    for template in sorted((WEBAPP / "templates").glob("*.html")):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert "style=" not in text and "<style" not in text, template.name
        assert not re.search(r"(src|href)=\"(https?:)?//", text), template.name
    for static in ("app.css", "app.js"):
        text = (WEBAPP / "static" / static).read_text()
        assert "http://" not in text and "https://" not in text and "@import" not in text
    assert "innerHTML" in (WEBAPP / "static" / "app.js").read_text()  # only ever server-escaped fragments


def test_list_query_defaults_and_messages():
    assert parse_list_query({}, 25) == (ListQuery(per_page=25), [])
    query, errors = parse_list_query({"sort": "name", "dir": "asc", "page": "3", "per_page": "50", "q": " Ada  L "},
                                     25)
    assert query == ListQuery("name", "asc", 3, 50, "ada l") and errors == []
    query, errors = parse_list_query({"sort": "x", "page": "two", "per_page": "0"}, 500)
    assert query == ListQuery(per_page=200) and len(errors) == 3
    assert ListQuery().args(page=2) == {"page": 2, "per_page": 25}


@pytest.mark.parametrize("first,last,email,ok", [
    ("Édith", "Piaf", "edith@example.com", True), ("Seán", "O'Brien", "", True), ("Tim", "Berners-Lee", "", True),
    ("", "", "", True), ("R2D2", "", "", False), ("Ada", "Love  lace", "", False), ("Ada", "", "ada@", False),
    ("<b>", "", "", False),
])
def test_create_customer_form_accepts_names_in_any_script_and_rejects_the_rest(form_ctx, first, last, email, ok):
    data = {"first_name": first, "last_name": last, "email": email, "lifecycle_stage": "random"}
    with form_ctx.test_request_context("/customers", method="POST", data=data):
        form = CreateCustomerForm()
        assert form.validate() is ok, form.errors
        if ok:
            assert form.choice() is None  # random: the seed draws the declared stage
        else:
            assert all(":" in m for m in form_errors(form))


def test_order_form_is_all_or_nothing(form_ctx):
    with form_ctx.test_request_context("/o", method="POST", data={}):
        form = OrderForm()
        assert form.validate() and form.items() is None  # a random order
    with form_ctx.test_request_context("/o", method="POST", data={"sku": "SKU-1", "quantity": "2", "price": "9.5"}):
        form = OrderForm()
        assert form.validate() and form.items() == [{"sku": "SKU-1", "quantity": 2, "price": 9.5}]
    with form_ctx.test_request_context("/o", method="POST", data={"quantity": "2"}):
        form = OrderForm()
        assert not form.validate()
        assert any("together" in m for m in form_errors(form))
