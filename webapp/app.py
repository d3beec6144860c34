"""The Flask application factory."""

from __future__ import annotations

import atexit
import gc
import logging
import secrets
import time
import weakref
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from jinja2 import Undefined

from webapp import api, charts, health, ui
from webapp.model import iso
from webapp.runtime import Runtime
from webapp.settings import WebSettings

log = logging.getLogger("webapp")

# No inline script or style anywhere: everything is served from /static by this app.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def create_app(settings: WebSettings | None = None) -> Flask:
    """Build the app. Without ``settings`` it reads the environment (the gunicorn entry point
    ``webapp:create_app()``). Raises ConfigError (one line) on unusable settings, e.g. production
    without SECRET_KEY.

    The app only reads Redis (the feeder, ``python -m webapp.feeder``, is the cache's one writer) and
    publishes the visitors' actions with the seed's publisher.
    """
    if settings is None:
        settings = WebSettings.from_env()
    settings.check()
    app = Flask(__name__)
    secret = settings.secret_key
    if not secret:  # development only (check() refuses production): a throwaway key per process
        secret = secrets.token_urlsafe(32)
        log.warning("SECRET_KEY not set (APP_ENV=development): using a random per-process key")
    app.config.update(
        SECRET_KEY=secret,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,
        SESSION_COOKIE_NAME="me_session",
        MAX_CONTENT_LENGTH=64 * 1024,
        WTF_CSRF_TIME_LIMIT=8 * 3600,
        WTF_CSRF_SSL_STRICT=settings.session_cookie_secure,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    CSRFProtect(app)
    runtime = Runtime(settings)
    app.extensions["marketing_engine"] = runtime
    app.register_blueprint(ui.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(health.bp)
    _register_filters(app, settings)

    @app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.path.startswith(("/api/", "/fragments/", "/readyz", "/healthz")):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        return render_template("error.html", title="Form expired",
                               message="The form expired or was not sent from this page "
                                       f"({exc.description}). Go back, reload the page and try again."), 400

    @app.errorhandler(404)
    def not_found(exc: Exception) -> Any:
        if request.path.startswith("/api/"):
            return jsonify({"error": "not found", "reason": f"no such resource {request.path}"}), 404
        return render_template("error.html", title="Not found", message="There is no such page."), 404

    @app.errorhandler(413)
    def too_large(exc: Exception) -> Any:
        return render_template("error.html", title="Too large", message="The form was too large."), 413

    # Everything built so far (modules, compiled templates, the app) lives as long as the process: out
    # of the garbage collector's scans, so a full collection during a request stays short (the list
    # page's p99, bench.bench_webapp).
    gc.freeze()
    # Flush the publisher at interpreter exit.
    ref = weakref.ref(runtime)
    atexit.register(lambda: (rt := ref()) is not None and rt.close())
    return app


def _missing(value: Any) -> bool:
    return value is None or value == "" or isinstance(value, Undefined)


def _register_filters(app: Flask, settings: WebSettings) -> None:
    def money(value: Any) -> str:
        return "—" if _missing(value) else f"{float(value):,.2f}"

    def number(value: Any) -> str:
        return "—" if _missing(value) else f"{int(value):,}"

    def score(value: Any) -> str:
        return "—" if _missing(value) else f"{float(value):.2f}"

    def when(value: Any) -> str:
        text = iso(value) if isinstance(value, int) and not isinstance(value, bool) else None
        return text.replace("T", " ").replace("Z", " UTC") if text else "—"

    def when_short(value: Any) -> str:
        text = iso(value) if isinstance(value, int) and not isinstance(value, bool) else None
        return text[:16].replace("T", " ") if text else "—"

    def text(value: Any) -> str:
        return "—" if _missing(value) else str(value)

    def ago(millis: Any) -> str:
        if not isinstance(millis, int) or isinstance(millis, bool):
            return "—"
        seconds = max(0, int(time.time() - millis / 1000))
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= size:
                return f"{seconds // size} {unit} ago"
        return f"{seconds} s ago"

    app.jinja_env.filters.update(money=money, number=number, score=score, when=when, when_short=when_short, text=text,
                                 ago=ago)
    app.jinja_env.globals.update(refresh_ms=settings.refresh_ms, app_env=settings.app_env, bars=charts.bars,
                                 histogram=charts.histogram, heat_class=charts.heat_class,
                                 sparkline=charts.sparkline)
