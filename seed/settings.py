"""Settings of the seed publisher (shared with the web UI) and of the seed simulator / CLI.

Only entry points call ``from_env()`` without an argument (it then reads ``os.environ``); everything
else receives the settings object.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from typing import Any

from common.settings import (
    ConfigError,
    boolean,
    bootstrap_servers,
    choice,
    env,
    fraction,
    http_url,
    load,
    non_negative_float,
    non_negative_int,
    positive_int,
    registry_url,
    same_as,
)

__all__ = ["ConfigError", "PublisherSettings", "SeedSettings", "TRANSPORTS"]

TRANSPORTS = ("rest", "kafka")
DEFAULT_REST_PROXY_URL = "http://redpanda.redpanda.svc.cluster.local:8082"
DEFAULT_SCHEMA_REGISTRY_URL = "http://redpanda.redpanda.svc.cluster.local:8081"
DEFAULT_BOOTSTRAP_SERVERS = "redpanda.redpanda.svc.cluster.local:9093"


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:  # also rejects NaN
        raise ValueError("must be > 0")
    return value


def iso_date(raw: str) -> str:
    """A calendar date YYYY-MM-DD (the simulated clock starts there, 00:00 UTC)."""
    return dt.date.fromisoformat(raw).isoformat()


def log_level(raw: str) -> str:
    level = raw.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("not a log level")
    return level


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


@dataclasses.dataclass(frozen=True)
class PublisherSettings:
    """Where and how events are published. Shared by the seed and the web UI."""

    transport: str = env("PUBLISH_TRANSPORT", "rest", choice(*TRANSPORTS), "rest or kafka")
    rest_proxy_url: str = env("REST_PROXY_URL", DEFAULT_REST_PROXY_URL, http_url, "an http(s) URL")
    schema_registry_url: str = env(
        "SCHEMA_REGISTRY_URL", DEFAULT_SCHEMA_REGISTRY_URL, registry_url, "an http(s) URL (or mock://name)"
    )
    bootstrap_servers: str = env(
        "KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP_SERVERS, bootstrap_servers, "host:port[,host:port]"
    )
    request_timeout_s: float = env("PUBLISH_TIMEOUT_S", 10.0, positive_float, "seconds > 0")
    max_retries: int = env("PUBLISH_MAX_RETRIES", 5, non_negative_int, "an integer >= 0")
    # Records per HTTP Proxy request (REST transport).
    batch_size: int = env("PUBLISH_BATCH_SIZE", 500, positive_int, "an integer > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PublisherSettings:
        return load(cls, _environ(environ))

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable behind ``field`` (error messages name the setting to fix)."""
        return {f.name: f.metadata["env"].name for f in dataclasses.fields(cls)}[field]


def _same_as_publisher(name: str) -> Any:
    """A SeedSettings field reading the same variable, default and parser as PublisherSettings.<name>."""
    return same_as(PublisherSettings, name)


_PUBLISHER_FIELDS = tuple(f.name for f in dataclasses.fields(PublisherSettings))


@dataclasses.dataclass(frozen=True)
class SeedSettings:
    """The seed job: simulator parameters, output paths and (flattened) publisher settings.

    The publisher fields are repeated here (same variables, defaults and parsers) so that
    ``common.settings.env_names(SeedSettings)`` lists every variable the seed reads; ``.publisher``
    gives them back as a :class:`PublisherSettings`.
    """

    customers: int = env("SEED_CUSTOMERS", 1000, positive_int, "an integer > 0")
    days: int = env("SEED_DAYS", 90, positive_int, "an integer > 0 (simulated days)")
    rate: float = env("SEED_RATE", 0.0, non_negative_float, "events/s >= 0 (0 = unthrottled)")
    seed: int = env("SEED_RANDOM_SEED", 42, non_negative_int, "an integer >= 0")
    start_date: str = env("SEED_START_DATE", "2026-01-01", iso_date, "a date YYYY-MM-DD")
    late_share: float = env("SEED_LATE_SHARE", 0.02, fraction, "a fraction 0..1")
    late_max_minutes: float = env("SEED_LATE_MAX_MINUTES", 360.0, positive_float, "minutes > 0")
    duplicate_share: float = env("SEED_DUPLICATE_SHARE", 0.01, fraction, "a fraction 0..1")
    label_window_days: int = env("SEED_LABEL_WINDOW_DAYS", 14, positive_int, "an integer > 0")
    ground_truth_path: str = env("SEED_GROUND_TRUTH", "", str, "a file path ('' = do not write)")
    log_level: str = env("LOG_LEVEL", "INFO", log_level, "DEBUG, INFO, WARNING or ERROR")
    log_json: bool = env("LOG_JSON", False, boolean, "true or false")
    transport: str = _same_as_publisher("transport")
    rest_proxy_url: str = _same_as_publisher("rest_proxy_url")
    schema_registry_url: str = _same_as_publisher("schema_registry_url")
    bootstrap_servers: str = _same_as_publisher("bootstrap_servers")
    request_timeout_s: float = _same_as_publisher("request_timeout_s")
    max_retries: int = _same_as_publisher("max_retries")
    batch_size: int = _same_as_publisher("batch_size")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SeedSettings:
        return load(cls, _environ(environ))

    @property
    def publisher(self) -> PublisherSettings:
        return PublisherSettings(**{name: getattr(self, name) for name in _PUBLISHER_FIELDS})

    @property
    def start_ms(self) -> int:
        start = dt.datetime.combine(dt.date.fromisoformat(self.start_date), dt.time(), tzinfo=dt.UTC)
        return int(start.timestamp() * 1000)
