"""Fixtures the unit tests share."""

from __future__ import annotations

import pytest
from flask import Flask


@pytest.fixture
def form_ctx():
    """A bare Flask app to build the web UI's forms in (CSRF off: the forms' own rules are under test)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x" * 32, WTF_CSRF_ENABLED=False)
    return app
