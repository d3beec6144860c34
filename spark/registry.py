"""Writer schemas by id, from the Schema Registry (driver side, never per record).

Resolved at start for every registered version of a subject, and again per batch for ids not seen
yet. A writer schema the topic's contract cannot read (not BACKWARD-compatible) is refused, so its
records go to quarantine instead of decoding into wrong columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.compat import backward_incompatibilities
from schemas.topics import Topic

log = logging.getLogger(__name__)


class WriterSchemas:
    def __init__(self, client: SchemaRegistryClient):
        self._client = client
        self._by_topic: dict[str, dict[int, str]] = {}
        self._refused: set[tuple[str, int]] = set()

    def for_topic(self, topic: Topic) -> dict[int, str]:
        return dict(self._by_topic.get(topic.name, {}))

    def preload(self, topic: Topic) -> None:
        """Every version registered under the topic's subject (none yet is fine)."""
        try:
            versions = self._client.get_versions(topic.subject)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return
            raise
        for version in versions:
            registered = self._client.get_version(topic.subject, version)
            self._accept(topic, registered.schema_id, registered.schema.schema_str)

    def resolve(self, topic: Topic, schema_ids: Iterable[int]) -> dict[int, str]:
        """Fetch ids not seen yet for this topic; return the usable writer schemas."""
        known = self._by_topic.setdefault(topic.name, {})
        for schema_id in schema_ids:
            if schema_id in known or (topic.name, schema_id) in self._refused:
                continue
            try:
                schema = self._client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:
                    log.warning("schema id %s on %s is not in the registry; its records go to quarantine",
                                schema_id, topic.name)
                    self._refused.add((topic.name, schema_id))
                    continue
                raise
            self._accept(topic, schema_id, schema.schema_str)
        return self.for_topic(topic)

    def _accept(self, topic: Topic, schema_id: int, schema_str: str) -> None:
        problems = backward_incompatibilities(topic.schema_str, schema_str)
        if problems:
            log.warning("schema id %s cannot be read with the %s contract (%s); quarantining its records",
                        schema_id, topic.name, problems[0])
            self._refused.add((topic.name, schema_id))
            return
        self._by_topic.setdefault(topic.name, {})[schema_id] = schema_str
