"""The web UI's "forget this customer" action without its dependencies (Redis on a closed port, no Kafka):
the confirmation form, the session's sent-actions history losing the customer, and the routes refusing
plainly (CSRF, a bad id, Redis down) without building a publisher. Over the real cache and broker:
tests/engines/test_webapp_forget_action.py."""

from __future__ import annotations

import re

import pytest

from webapp import actions
from webapp.forms import ForgetForm, form_errors

ID = "3f0c2a4e-6c1d-4b7a-9a51-0d8f2f6f1b2c"


@pytest.mark.parametrize("typed,ok", [
    (ID, True), (f"  {ID} ", True),  # surrounding spaces of a paste are not a different id
    (ID.upper(), False), (ID[:-1], False), ("", False), ("yes", False), (f"{ID} {ID}", False),
])
def test_only_the_exact_customer_id_confirms(form_ctx, typed, ok):
    with form_ctx.test_request_context("/f", method="POST", data={"confirm": typed}):
        form = ForgetForm()
        assert form.validate() is (len(typed.strip()) <= 64), form.errors
        assert form.confirms(ID) is ok


def test_an_overlong_confirmation_is_one_readable_message(form_ctx):
    with form_ctx.test_request_context("/f", method="POST", data={"confirm": "x" * 65}):
        form = ForgetForm()
        assert not form.validate()
        assert form_errors(form) == ["Confirmation: at most 64 characters."]


def test_forgetting_drops_every_action_of_that_customer_and_only_those():
    session: dict = {}
    actions.remember(session, "customer", ID, "create Ada Lovelace <ada@example.com> declared customer", None)
    actions.remember(session, "order", "c-other", "order 10.00 EUR", 0)
    actions.remember(session, "order", ID, "order 12.00 EUR", 0)
    assert actions.forget(session, ID) == 2
    assert [a["customer_id"] for a in session["actions"]] == ["c-other"]
    assert "ada@example.com" not in repr(session)
    kept = session["actions"]
    assert actions.forget(session, ID) == 0  # twice: nothing more, the list left as it was
    assert session["actions"] is kept
    empty: dict = {}
    assert actions.forget(empty, ID) == 0 and empty == {}  # no cookie written for nothing


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_the_routes_refuse_plainly_and_publish_nothing_while_redis_is_down(app):
    client = app.test_client()
    page = client.get(f"/customers/{ID}/forget")
    assert page.status_code == 503
    text = page.get_data(as_text=True)
    assert "Cannot check this customer: Redis is unreachable" in text and "Nothing was sent" in text
    assert 'name="confirm"' not in text  # nothing to confirm while nothing can be checked
    no_token = client.post(f"/customers/{ID}/forget", data={"confirm": ID})
    assert no_token.status_code == 400 and "reload the page" in no_token.get_data(as_text=True)
    token = _csrf(client.get("/").get_data(as_text=True))  # the index still has its forms
    confirmed = client.post(f"/customers/{ID}/forget", data={"csrf_token": token, "confirm": ID})
    assert confirmed.status_code == 503
    assert "Redis is unreachable" in confirmed.get_data(as_text=True)
    assert app.extensions["marketing_engine"]._publisher is None, "a publisher was built: something was sent"
    for method in (client.get, client.post):
        assert method("/customers/bad%20id/forget", data={"csrf_token": token}).status_code == 404
