"""Settings of the feeder process (``python -m webapp.feeder``): exactly the variables it reads, each
declared once in :class:`webapp.settings.WebSettings` (same variable, default and parser). A class of
its own so that the feeder's pod needs no web-only setting (SECRET_KEY, PORT, ...) and the chart's
env of each pod is checked against what that process reads."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from common import settings as s
from webapp.settings import WebSettings


def _same(name: str):  # noqa: ANN202 - a dataclass field
    return s.same_as(WebSettings, name)


def _secret(field):  # noqa: ANN001, ANN202 - kept out of the repr (settings get logged)
    field.repr = False
    return field


@dataclasses.dataclass(frozen=True)
class FeederSettings:
    redis_url: str = _same("redis_url")
    redis_password: str = _secret(_same("redis_password"))
    bootstrap_servers: str = _same("bootstrap_servers")
    schema_registry_url: str = _same("schema_registry_url")
    consumer_group: str = _same("consumer_group")
    cache_reset_on_start: bool = _same("cache_reset_on_start")
    startup_wait_s: float = _same("startup_wait_s")
    bind_host: str = _same("bind_host")
    feeder_health_port: int = _same("feeder_health_port")
    feeder_batch_max: int = _same("feeder_batch_max")
    history_max: int = _same("history_max")
    log_level: str = _same("log_level")
    log_json: bool = _same("log_json")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FeederSettings:
        return s.load(cls, os.environ if environ is None else environ)

    @staticmethod
    def env_name(field: str) -> str:
        return WebSettings.env_name(field)


def env_names() -> list[str]:
    """Every environment variable the feeder reads."""
    return s.env_names(FeederSettings)
