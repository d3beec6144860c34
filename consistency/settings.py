"""``python -m consistency``'s settings (environment -> this object; the chart renders the variables)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from common import settings as s
from schemas import topics
from seed.settings import PublisherSettings


@dataclasses.dataclass(frozen=True)
class ConsistencySettings:
    bootstrap_servers: str = s.same_as(PublisherSettings, "bootstrap_servers")
    schema_registry_url: str = s.same_as(PublisherSettings, "schema_registry_url")
    topic_prefix: str = s.env("TOPIC_PREFIX", "", str, "a prefix for every topic name (empty in the product)")
    # A side may lag the other this long before a difference counts as disagreement (the pipeline's
    # freshness is well under a minute: docs/freshness.md).
    settle_s: float = s.env("CONSISTENCY_SETTLE_S", 300.0, s.non_negative_float, "seconds >= 0")
    examples: int = s.env("CONSISTENCY_EXAMPLES", 5, s.non_negative_int, "an integer >= 0")
    read_timeout_s: float = s.env("CONSISTENCY_READ_TIMEOUT_S", 60.0, s.non_negative_float,
                                  "seconds >= 0 (reading each topic to its end)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ConsistencySettings:
        return s.load(cls, os.environ if environ is None else environ)

    @classmethod
    def env_name(cls, field: str) -> str:
        return {f.name: f.metadata["env"].name for f in dataclasses.fields(cls)}[field]

    def topic(self, contract: topics.Topic) -> topics.Topic:
        return topics.prefixed(contract, self.topic_prefix)
