"""Web UI: Flask app (customer table, customer page, insights, actions, live refresh, JSON API, probes) on a
Redis cache written only by the feeder (``python -m webapp.feeder``).

Entry points: ``python -m webapp`` (development server on PORT, default 5000) and gunicorn with
``gunicorn -c python:webapp.gunicorn_conf`` (the image), which serves ``webapp:create_app()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from webapp.settings import WebSettings

__all__ = ["create_app"]


def create_app(settings: WebSettings | None = None) -> Flask:
    """See :func:`webapp.app.create_app` (imported lazily: ``webapp.settings`` stays light to import)."""
    from webapp.app import create_app as _create_app

    return _create_app(settings)
