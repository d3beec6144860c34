"""Settings of the web UI, built from the environment (the Helm chart renders the same variables).

The publisher settings (``PUBLISH_TRANSPORT``, ``REST_PROXY_URL``, ``SCHEMA_REGISTRY_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``PUBLISH_TIMEOUT_S``, ...) are the seed's: their fields are copied from
:class:`seed.settings.PublisherSettings` (same variable, default and parser, declared once in the
seed), so ``common.settings.env_names(WebSettings)`` lists every variable the web app reads, and
``WebSettings.publisher`` hands them back as a ``PublisherSettings``. The feeder reads from the same
``KAFKA_BOOTSTRAP_SERVERS`` and decodes Avro through the same ``SCHEMA_REGISTRY_URL``.

One settings object for both processes of the web UI, the gunicorn server and the feeder
(``python -m webapp.feeder``): they share the Redis and Kafka endpoints, and the chart renders one
set of variables for the two.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from common import settings as s
from common.settings import ConfigError
from seed.settings import PublisherSettings

__all__ = ["APP_ENVS", "ConfigError", "WebSettings", "env_names"]

APP_ENVS = ("development", "production")
DEFAULT_REDIS_URL = "redis://marketing-engine-redis:6379/0"
MIN_SECRET_KEY_LENGTH = 16


def _from_publisher(name: str) -> Any:
    """A field reading the same variable, with the same default and parser, as PublisherSettings.<name>."""
    return s.same_as(PublisherSettings, name)


def _secret(field: Any) -> Any:
    """Keep a field out of the dataclass repr (settings get logged)."""
    field.repr = False
    return field


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("not a log level")
    return level


def _consumer_group(raw: str) -> str:
    if not raw or len(raw) > 200 or any(c.isspace() for c in raw):
        raise ValueError("must be 1-200 characters without spaces")
    return raw


def _bind_host(raw: str) -> str:
    if not raw or any(c.isspace() or c == "/" for c in raw):
        raise ValueError("not a host name or address")
    return raw


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:  # also rejects NaN
        raise ValueError("must be > 0")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("out of range")
    return value


_PUBLISHER_FIELDS = tuple(f.name for f in dataclasses.fields(PublisherSettings))


@dataclasses.dataclass(frozen=True)
class WebSettings:
    # -- cache --------------------------------------------------------------------------------------------
    redis_url: str = s.env("REDIS_URL", DEFAULT_REDIS_URL, s.redis_url, "redis://host:port/db")
    redis_password: str = s.env("REDIS_PASSWORD", "", str, "a password ('' = none or the one in REDIS_URL)")
    consumer_group: str = s.env(
        "CONSUMER_GROUP", "marketing-engine-webapp", _consumer_group,
        "a Kafka consumer group id without spaces (the feeder commits its positions there, for lag monitoring)",
    )
    cache_reset_on_start: bool = s.env(
        "CACHE_RESET_ON_START", False, s.boolean, "true or false (the feeder wipes the cache and rebuilds it)"
    )
    startup_wait_s: float = s.env(
        "STARTUP_WAIT_S", 30.0, s.non_negative_float,
        "seconds >= 0 (how long a process waits at start for its dependencies before it gives up)",
    )
    ready_max_lag: int = s.env(
        "READY_MAX_LAG", 0, s.non_negative_int, "an integer >= 0 (0 = report the feeder's lag, never fail on it)"
    )
    # -- the feeder (python -m webapp.feeder) ----------------------------------------------------------------
    feeder_health_port: int = s.env(
        "FEEDER_HEALTH_PORT", 8081, _port, "a TCP port 1-65535 (the feeder's /healthz and /readyz)"
    )
    feeder_batch_max: int = s.env(
        "FEEDER_BATCH_MAX", 500, s.positive_int, "an integer > 0 (records per cache transaction)"
    )
    feeder_stale_s: float = s.env(
        "FEEDER_STALE_S", 15.0, _positive_float,
        "seconds > 0 (the web UI reports the feeder as not running when its status is older)",
    )
    history_max: int = s.env(
        "HISTORY_MAX", 20, s.positive_int,
        "an integer > 0 (scores, segment changes, orders and engagements kept per customer)",
    )
    # -- web ----------------------------------------------------------------------------------------------
    app_env: str = s.env("APP_ENV", "production", s.choice(*APP_ENVS), "development or production")
    secret_key: str = _secret(s.env("SECRET_KEY", "", str, "a long random string"))
    session_cookie_secure: bool = s.env(
        "SESSION_COOKIE_SECURE", False, s.boolean, "true or false (true when served over https)"
    )
    bind_host: str = s.env("BIND_HOST", "0.0.0.0", _bind_host, "an address to listen on, e.g. 0.0.0.0")
    port: int = s.env("PORT", 5000, _port, "a TCP port 1-65535")
    web_workers: int = s.env("WEB_WORKERS", 2, s.positive_int, "an integer > 0 (gunicorn worker processes)")
    web_threads: int = s.env("WEB_THREADS", 4, s.positive_int, "an integer > 0 (threads per gunicorn worker)")
    page_size: int = s.env("PAGE_SIZE", 25, s.positive_int, "an integer > 0 (default rows per page)")
    search_max_matches: int = s.env(
        "SEARCH_MAX_MATCHES", 1000, s.positive_int, "an integer > 0 (matches a search looks at)"
    )
    refresh_ms: int = s.env("REFRESH_INTERVAL_MS", 2000, s.positive_int, "milliseconds > 0 (live refresh)")
    log_level: str = s.env("LOG_LEVEL", "INFO", _log_level, "DEBUG, INFO, WARNING or ERROR")
    log_json: bool = s.env("LOG_JSON", False, s.boolean, "true or false")
    # -- publishing (the seed's PublisherSettings fields; the consumer uses bootstrap + registry) ---------
    transport: str = _from_publisher("transport")
    rest_proxy_url: str = _from_publisher("rest_proxy_url")
    schema_registry_url: str = _from_publisher("schema_registry_url")
    bootstrap_servers: str = _from_publisher("bootstrap_servers")
    request_timeout_s: float = _from_publisher("request_timeout_s")
    max_retries: int = _from_publisher("max_retries")
    batch_size: int = _from_publisher("batch_size")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebSettings:
        return s.load(cls, os.environ if environ is None else environ)

    @staticmethod
    def env_name(field: str) -> str:
        """The environment variable behind a field (error messages name the setting to fix)."""
        return {f.name: f.metadata["env"].name for f in dataclasses.fields(WebSettings)}[field]

    @property
    def publisher(self) -> PublisherSettings:
        return PublisherSettings(**{name: getattr(self, name) for name in _PUBLISHER_FIELDS})

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    def check(self) -> None:
        """Refuse settings the app must not start with (one-line ConfigError)."""
        if self.production and not self.secret_key:
            raise ConfigError(
                "SECRET_KEY is not set: APP_ENV=production refuses to start without a secret key "
                "(set SECRET_KEY, or APP_ENV=development for a throwaway per-process key)"
            )
        if self.production and len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(
                f"SECRET_KEY is too short: APP_ENV=production needs at least {MIN_SECRET_KEY_LENGTH} characters"
            )


def env_names() -> list[str]:
    """Every environment variable the web app reads (same as ``common.settings.env_names(WebSettings)``)."""
    return s.env_names(WebSettings)
