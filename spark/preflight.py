"""What a job checks before it starts Spark: each dependency it needs answers, and DELTA_ROOT is usable.

Without these checks a wrong address surfaces late and noisily: Spark's Kafka source fails inside a
running query, the registry client raises a transport traceback, a read-only volume fails the first
Delta commit. Here each problem is found in a second or two, without a JVM, and told in one line
naming the dependency, the address tried and the setting that points there.
"""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from spark.settings import JobSettings


class DependencyError(RuntimeError):
    """A dependency is unreachable or unusable; ``str()`` is the one line an entry point prints."""

    def __init__(self, dependency: str, address: str, setting: str, reason: str):
        self.dependency, self.address, self.setting, self.reason = dependency, address, setting, reason
        super().__init__(f"{dependency} at {address} ({setting}): {' '.join(reason.split())}")


def kafka(settings: JobSettings) -> None:
    """The brokers answer a metadata request within STARTUP_WAIT_S (retried: a broker may be starting)."""
    errors: list[KafkaError] = []
    # librdkafka logs every failed connect to stderr itself; the reason comes through error_cb instead.
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers, "log_level": 0, "error_cb": errors.append,
                         "socket.connection.setup.timeout.ms": 5000})
    deadline = time.monotonic() + settings.startup_wait_s
    while True:
        try:
            admin.list_topics(timeout=max(0.5, min(2.0, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            last = exc.args[0]
        admin.poll(0)  # serves error_cb
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    # The connection-level error says why (refused, DNS, TLS); "all brokers down" and the summary do not.
    connection = [e for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
    reason = connection[-1].str().split(": ", 1)[-1] if connection else last.str()
    raise DependencyError("Kafka unreachable", settings.bootstrap_servers, settings.env_name("bootstrap_servers"),
                          f"no broker answered within {settings.startup_wait_s:g}s: {reason}")


def schema_registry(settings: JobSettings) -> None:
    """``GET /subjects`` answers with a JSON list (retried within STARTUP_WAIT_S)."""
    url = settings.schema_registry_url
    if url.startswith("mock://"):  # confluent-kafka's in-memory registry: nothing to reach
        return
    setting = settings.env_name("schema_registry_url")
    deadline = time.monotonic() + settings.startup_wait_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/subjects", timeout=5) as reply:  # noqa: S310 - http(s) only (settings)
                body = reply.read()
            if not isinstance(json.loads(body), list):
                raise ValueError("not a list")
            return
        except urllib.error.HTTPError as exc:
            # An answer, just not the one a registry gives: retrying will not change it.
            raise DependencyError("Schema Registry unusable", url, setting,
                                  f"GET /subjects answered HTTP {exc.code} {exc.reason}") from None
        except ValueError:
            raise DependencyError("Schema Registry unusable", url, setting,
                                  "GET /subjects did not answer with a JSON list: is this a Schema Registry?") from None
        except OSError as exc:  # refused, DNS, timeout (URLError is an OSError)
            reason = getattr(exc, "reason", exc)
            if time.monotonic() >= deadline:
                raise DependencyError("Schema Registry unreachable", url, setting,
                                      f"no answer within {settings.startup_wait_s:g}s: {reason}") from None
        time.sleep(0.5)


def _local(path: str) -> Path | None:
    """A local filesystem path, or None for a URI only Spark's Hadoop filesystems can check (s3a://, ...)."""
    parsed = urlparse(path)
    if parsed.scheme == "file":
        return Path(parsed.path)
    if not parsed.scheme or len(parsed.scheme) == 1:  # a plain path (or a Windows drive letter)
        return Path(path)
    return None


def writable_dir(settings: JobSettings, field: str, what: str) -> None:
    """The directory a setting names can be written to, or created (the first job to write creates it).
    Tried with a real file: permission bits say nothing for root or on a read-only mount."""
    raw = getattr(settings, field)
    path = _local(raw)
    if path is None:
        return
    setting = settings.env_name(field)
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DependencyError(what, raw, setting, f"{existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".write-check-"):
            pass
    except OSError as exc:
        where = "the directory" if existing == path else f"it does not exist, and its parent {existing}"
        raise DependencyError(what, raw, setting, f"{where} is not writable ({exc.strerror})") from None


def storage(settings: JobSettings) -> None:
    """DELTA_ROOT (and CHECKPOINT_ROOT when set apart) can hold the job's tables and checkpoints."""
    writable_dir(settings, "delta_root", "Delta root unusable")
    if settings.checkpoint_root:
        writable_dir(settings, "checkpoint_root", "checkpoint root unusable")


def tables_exist(settings: JobSettings, paths: list[str], run_first: str) -> None:
    """Input tables of a batch job (train, evaluate) are there: a wrong DELTA_ROOT is named, not a Spark
    AnalysisException. Local paths only; other filesystems are checked once Spark runs."""
    for table in paths:
        path = _local(table)
        if path is not None and not (path / "_delta_log").is_dir():
            raise DependencyError("Delta table missing", table, settings.env_name("delta_root"),
                                  f"no Delta table there ({run_first})")
