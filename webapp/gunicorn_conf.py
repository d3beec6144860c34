"""gunicorn configuration of the web UI (the image runs ``gunicorn -c python:webapp.gunicorn_conf``).

The workers only read Redis and publish the visitors' actions: the cache's one writer is the feeder,
a process of its own (``python -m webapp.feeder``, its own Deployment in the chart). So any number of
workers and replicas is safe, and ``preload_app`` stays False only to keep each worker's Redis and
Kafka clients out of the master.

Settings are checked here, before any worker starts: a bad value (or production without SECRET_KEY)
prints one line to stderr and exits 2, instead of a traceback per worker; so does Redis not answering
at start (``on_starting``).
"""

from __future__ import annotations

import os
import sys

from common.settings import ConfigError
from webapp.settings import WebSettings

try:
    _settings = WebSettings.from_env(os.environ)
    _settings.check()
except ConfigError as _exc:
    print(f"webapp: {_exc}", file=sys.stderr)
    raise SystemExit(2) from None

wsgi_app = "webapp:create_app()"
bind = [f"{_settings.bind_host}:{_settings.port}"]
workers = _settings.web_workers
worker_class = "gthread"
threads = _settings.web_threads
preload_app = False
timeout = 60  # a publish can take the publisher's retries
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
forwarded_allow_ips = "127.0.0.1"
proc_name = "marketing-engine-webapp"
# No gunicornc control socket: it would be created under $HOME, which is read-only in the cluster pod.
control_socket_disable = True
# no request bodies larger than the app accepts; limit header abuse
limit_request_line = 4094
limit_request_fields = 50


def on_starting(server) -> None:  # noqa: ANN001 - gunicorn's hook signature
    """In the master, before any socket or worker: Redis must answer (within STARTUP_WAIT_S), or the
    server ends with one line, not a worker traceback per request. Not at import: importing this
    file must not need a network."""
    from webapp.runtime import StartupError, wait_for_redis

    try:
        wait_for_redis(_settings)
    except StartupError as exc:
        print(f"webapp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def post_worker_init(worker) -> None:  # noqa: ANN001 - gunicorn's hook signature
    from common.logs import configure

    configure(_settings.log_level, _settings.log_json)


def worker_exit(server, worker) -> None:  # noqa: ANN001
    """Flush the publisher (an action sent just before the shutdown is delivered)."""
    app = getattr(worker, "wsgi", None)
    runtime = getattr(app, "extensions", {}).get("marketing_engine") if app is not None else None
    if runtime is not None:
        runtime.close()
