"""Settings of the KSQL ConfigMap operator (environment -> frozen dataclass, see common.settings)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from common import settings as s

# A label key: optional DNS-subdomain prefix + "/" + name (Kubernetes' syntax, simplified).
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")


def label_selector(raw: str) -> str:
    """``key=value`` (the label must have that value) or ``key`` (the label must be present)."""
    key, sep, value = raw.partition("=")
    if not _LABEL_KEY.match(key) or len(key.rpartition("/")[2]) > 63:
        raise ValueError(f"{key!r} is not a label key")
    if sep and (not _LABEL_VALUE.match(value) or len(value) > 63):
        raise ValueError(f"{value!r} is not a label value")
    return raw


def positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:  # also rejects NaN
        raise ValueError("must be > 0")
    return value


def optional_http_url(raw: str) -> str:
    return "" if raw == "" else s.http_url(raw)


def namespace_name(raw: str) -> str:
    if raw and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", raw):
        raise ValueError("not a namespace name")
    return raw


@dataclass(frozen=True)
class OperatorSettings:
    ksqldb_url: str = s.env("KSQLDB_URL", "http://marketing-engine-ksqldb:8088", s.http_url, "an http(s) URL")
    watch_namespace: str = s.env(
        "WATCH_NAMESPACE", "", namespace_name, "a namespace name (empty: whatever `kopf run -n` watches)"
    )
    configmap_label: str = s.env(
        "KSQL_CONFIGMAP_LABEL", "marketing-engine.io/ksql=true", label_selector, "a label key=value or key"
    )
    drift_interval: float = s.env(
        "KSQL_DRIFT_INTERVAL_SECONDS", 60.0, positive_float, "seconds between drift checks, > 0"
    )
    request_timeout: float = s.env(
        "KSQL_REQUEST_TIMEOUT_SECONDS", 30.0, positive_float, "seconds, > 0 (one HTTP request to ksqlDB)"
    )
    command_timeout: float = s.env(
        "KSQL_COMMAND_TIMEOUT_SECONDS", 120.0, positive_float,
        "seconds, > 0 (how long to follow a QUEUED/EXECUTING command at /status)",
    )
    startup_timeout: float = s.env(
        # kopf serves its liveness endpoint only after the startup handlers: stay well inside the
        # chart's liveness budget (10 s delay + 3 x 20 s), or the kubelet restarts a waiting operator
        "KSQL_STARTUP_TIMEOUT_SECONDS", 45.0, positive_float,
        "seconds, > 0 (how long the operator waits at start for ksqlDB's /info before exiting)",
    )
    backoff: float = s.env(
        "KSQL_BACKOFF_SECONDS", 5.0, positive_float, "seconds, > 0 (first retry delay when ksqlDB is unavailable)"
    )
    backoff_max: float = s.env("KSQL_BACKOFF_MAX_SECONDS", 300.0, positive_float, "seconds, > 0 (retry delay cap)")
    schema_registry_url: str = s.env(
        "SCHEMA_REGISTRY_URL", "http://redpanda.redpanda.svc.cluster.local:8081", optional_http_url,
        "an http(s) URL, or empty to skip the subject check",
    )
    require_source_subjects: bool = s.env(
        "KSQL_REQUIRE_SOURCE_SUBJECTS", True, s.boolean,
        "true/false: wait for the Schema Registry subject before creating an Avro/Protobuf source stream",
    )
    log_level: str = s.env("LOG_LEVEL", "INFO", s.choice("DEBUG", "INFO", "WARNING", "ERROR"), "a log level")
    log_json: bool = s.env("LOG_JSON", False, s.boolean, "true/false: JSON log lines")

    @property
    def label_key(self) -> str:
        return self.configmap_label.partition("=")[0]

    @property
    def label_value(self) -> str | None:
        key, sep, value = self.configmap_label.partition("=")
        return value if sep else None

    def selects(self, labels: Mapping[str, str], namespace: str | None) -> bool:
        """Whether a ConfigMap with these labels, in this namespace, is one the operator manages."""
        if self.watch_namespace and namespace != self.watch_namespace:
            return False
        if self.label_key not in labels:
            return False
        return self.label_value is None or labels[self.label_key] == self.label_value

    def backoff_delay(self, retry: int, retry_after: float | None = None) -> float:
        """Exponential backoff for the ``retry``-th retry, capped, never shorter than Retry-After."""
        delay = min(self.backoff_max, self.backoff * (2 ** max(0, min(retry, 30))))
        return max(delay, retry_after or 0.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        return s.load(cls, os.environ if environ is None else environ)
