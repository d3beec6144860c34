"""``python -m forget``'s settings (environment -> this object)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from common import settings as s
from schemas import topics
from seed.settings import PublisherSettings


@dataclasses.dataclass(frozen=True)
class ForgetSettings:
    bootstrap_servers: str = s.same_as(PublisherSettings, "bootstrap_servers")
    schema_registry_url: str = s.same_as(PublisherSettings, "schema_registry_url")
    topic_prefix: str = s.env("TOPIC_PREFIX", "", str, "a prefix for every topic name (empty in the product)")
    requested_by: str = s.env("FORGET_REQUESTED_BY", "", str, "who asks (default: the OS user name)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ForgetSettings:
        return s.load(cls, os.environ if environ is None else environ)

    @classmethod
    def env_name(cls, field: str) -> str:
        return {f.name: f.metadata["env"].name for f in dataclasses.fields(cls)}[field]

    def topic(self, contract: topics.Topic) -> topics.Topic:
        return dataclasses.replace(contract, name=self.topic_prefix + contract.name) if self.topic_prefix else contract
