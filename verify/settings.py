"""``python -m verify``'s settings: the endpoints of a running stack (environment -> this object).

The publisher fields are the web UI's and the seed's (same variables, defaults and parsers): the probe
is published exactly as the UI publishes a new customer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from common.settings import env, http_url, load, same_as
from seed.settings import PublisherSettings, _environ, positive_float

HOPS = ("kafka", "ksqldb", "web", "bronze", "silver", "gold", "score")


def hop_list(raw: str) -> tuple[str, ...]:
    names = tuple(h.strip() for h in raw.split(",") if h.strip())
    unknown = [h for h in names if h not in HOPS]
    if unknown or not names:
        raise ValueError(f"unknown hop {', '.join(unknown) or '(none)'}")
    return tuple(h for h in HOPS if h in names)  # always in pipeline order


@dataclasses.dataclass(frozen=True)
class VerifySettings:
    ksqldb_url: str = env("KSQLDB_URL", "http://marketing-engine-ksqldb:8088", http_url, "an http(s) URL")
    web_url: str = env("WEB_URL", "http://marketing-engine-web:5000", http_url, "an http(s) URL")
    timeout_s: float = env("VERIFY_TIMEOUT_S", 180.0, positive_float, "seconds > 0 (the whole run)")
    hops: tuple[str, ...] = env("VERIFY_HOPS", HOPS, hop_list, f"a comma-separated subset of {','.join(HOPS)}")
    transport: str = same_as(PublisherSettings, "transport")
    rest_proxy_url: str = same_as(PublisherSettings, "rest_proxy_url")
    schema_registry_url: str = same_as(PublisherSettings, "schema_registry_url")
    bootstrap_servers: str = same_as(PublisherSettings, "bootstrap_servers")
    request_timeout_s: float = same_as(PublisherSettings, "request_timeout_s")
    max_retries: int = same_as(PublisherSettings, "max_retries")
    batch_size: int = same_as(PublisherSettings, "batch_size")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VerifySettings:
        return load(cls, _environ(environ))

    @classmethod
    def env_name(cls, field: str) -> str:
        return {f.name: f.metadata["env"].name for f in dataclasses.fields(cls)}[field]

    @property
    def publisher(self) -> PublisherSettings:
        names = {f.name for f in dataclasses.fields(PublisherSettings)}
        return PublisherSettings(**{n: getattr(self, n) for n in names})
