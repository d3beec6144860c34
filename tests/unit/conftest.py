"""Fixtures the unit tests share."""

from __future__ import annotations

import pytest
from flask import Flask

from webapp import create_app
from webapp.settings import WebSettings


@pytest.fixture
def app():
    """The web app with a Redis nobody listens on (port 1): pages that need no data, and error pages."""
    settings = WebSettings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", "SECRET_KEY": "s" * 32})
    app = create_app(settings)
    yield app
    app.extensions["marketing_engine"].close()


@pytest.fixture
def form_ctx():
    """A bare Flask app to build the web UI's forms in (CSRF off: the forms' own rules are under test)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="x" * 32, WTF_CSRF_ENABLED=False)
    return app
