"""Typed settings built from environment variables, failing fast with a message naming the variable.

Configuration flows one way: environment (or Helm values rendered into it) -> a frozen settings
dataclass per component -> code. Nothing below a component's ``Settings.from_env`` reads
``os.environ``.

A component declares its settings as a frozen dataclass whose fields carry
``env("NAME", default, parse, "expected form")`` metadata; :func:`load` builds it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlparse

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and the expected form."""


@dataclasses.dataclass(frozen=True)
class _EnvSpec:
    name: str
    parse: Callable[[str], Any]
    expected: str


def env(name: str, default: Any, parse: Callable[[str], Any] = str, expected: str = "a string") -> Any:
    """Declare a dataclass field read from environment variable ``name``."""
    return dataclasses.field(default=default, metadata={"env": _EnvSpec(name, parse, expected)})


def same_as(cls: type, name: str) -> Any:
    """A field reading the same variable, with the same default and parser, as ``cls.<name>``
    (one component's settings embedding another's, e.g. the web UI's publisher settings)."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    spec: _EnvSpec = field.metadata["env"]
    return env(spec.name, field.default, spec.parse, spec.expected)


def load(cls: type[T], environ: Mapping[str, str]) -> T:
    """Build settings dataclass ``cls`` from ``environ``; raise ConfigError on a bad value."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        spec: _EnvSpec | None = f.metadata.get("env")
        if spec is None or spec.name not in environ:
            continue
        raw = environ[spec.name].strip()
        try:
            values[f.name] = spec.parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{spec.name}={raw!r} is invalid: expected {spec.expected} ({exc})") from None
    return cls(**values)


def env_names(cls: type) -> list[str]:
    """Every environment variable a settings class reads (the chart's env vars are checked against it)."""
    return [f.metadata["env"].name for f in dataclasses.fields(cls) if "env" in f.metadata]


# ---- parsers: each raises ValueError with a short reason -------------------------------------------


def positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:  # also rejects NaN
        raise ValueError("must be >= 0")
    return value


def fraction(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be between 0 and 1")
    return value


def boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("not a boolean")


def http_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ValueError("not an http(s) URL")
    return raw.rstrip("/")


def registry_url(raw: str) -> str:
    """A Schema Registry URL; ``mock://`` is confluent-kafka's in-memory registry (tests, dry runs)."""
    if raw.startswith("mock://"):
        return raw
    return http_url(raw)


def redis_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in {"redis", "rediss", "unix"} or (parsed.scheme != "unix" and not parsed.hostname):
        raise ValueError("not a redis:// URL")
    return raw


def bootstrap_servers(raw: str) -> str:
    hosts = [h.strip() for h in raw.split(",") if h.strip()]
    if not hosts:
        raise ValueError("empty")
    for host in hosts:
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{host!r} is not host:port")
    return ",".join(hosts)


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"not one of {', '.join(allowed)}")
        return raw

    return parse


def csv_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())
