"""Writer schemas by id, from the Schema Registry (driver side, never per record).

Resolved at start for every registered version of a subject, and again per batch for ids not seen
yet. A writer schema the topic's contract cannot read (not BACKWARD-compatible) is refused, so its
records go to quarantine instead of decoding into wrong columns.

A registry that cannot be reached or answers with an error is a DependencyError naming its address
and the setting (one line at start; a failed batch, replayed on restart, when it happens mid-stream).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.compat import backward_incompatibilities
from schemas.topics import Topic
from spark.preflight import DependencyError

log = logging.getLogger(__name__)
T = TypeVar("T")


class WriterSchemas:
    def __init__(self, client: SchemaRegistryClient, url: str = "", setting: str = "SCHEMA_REGISTRY_URL"):
        self._client = client
        self._url = url or "(the configured URL)"
        self._setting = setting
        self._by_topic: dict[str, dict[int, str]] = {}
        self._refused: set[tuple[str, int]] = set()

    def for_topic(self, topic: Topic) -> dict[int, str]:
        return dict(self._by_topic.get(topic.name, {}))

    def preload(self, topic: Topic) -> None:
        """Every version registered under the topic's subject (none yet is fine)."""
        try:
            versions = self._call(self._client.get_versions, topic.subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return
            raise self._unusable(exc) from None
        for version in versions:
            registered = self._call(self._client.get_version, topic.subject, version)
            self._accept(topic, registered.schema_id, registered.schema.schema_str)

    def resolve(self, topic: Topic, schema_ids: Iterable[int]) -> dict[int, str]:
        """Fetch ids not seen yet for this topic; return the usable writer schemas."""
        known = self._by_topic.setdefault(topic.name, {})
        for schema_id in schema_ids:
            if schema_id in known or (topic.name, schema_id) in self._refused:
                continue
            try:
                schema = self._call(self._client.get_schema, schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    log.warning("schema id %s on %s is not in the registry; its records go to quarantine",
                                schema_id, topic.name)
                    self._refused.add((topic.name, schema_id))
                    continue
                raise self._unusable(exc) from None
            self._accept(topic, schema_id, schema.schema_str)
        return self.for_topic(topic)

    def _call(self, method: Callable[..., T], *args: object) -> T:
        """A client call; transport failures (refused, DNS, timeout: httpx errors after the client's own
        retries) become a DependencyError, the registry's own error replies stay SchemaRegistryError."""
        try:
            return method(*args)
        except SchemaRegistryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client's transport library is an implementation detail
            raise DependencyError("Schema Registry unreachable", self._url, self._setting,
                                  f"{type(exc).__name__}: {exc}") from None

    def _unusable(self, exc: SchemaRegistryError) -> DependencyError:
        return DependencyError("Schema Registry unusable", self._url, self._setting,
                               f"answered HTTP {exc.http_status_code}: {exc.error_message}")

    def _accept(self, topic: Topic, schema_id: int, schema_str: str) -> None:
        problems = backward_incompatibilities(topic.schema_str, schema_str)
        if problems:
            log.warning("schema id %s cannot be read with the %s contract (%s); quarantining its records",
                        schema_id, topic.name, problems[0])
            self._refused.add((topic.name, schema_id))
            return
        self._by_topic.setdefault(topic.name, {})[schema_id] = schema_str
