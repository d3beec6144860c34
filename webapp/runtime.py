"""Per-process state of the web server: a read-only Redis client, the seed's publisher, and what the
pages say about the pipeline (read from the feeder's status in Redis; the web never asks Kafka)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import redis

from common.errors import one_line
from schemas.topics import Topic
from seed.publish import Publisher, PublishError, make_publisher
from webapp import cache as cache_mod
from webapp.cache import CacheReader, RedisError
from webapp.settings import WebSettings
from webapp.status import RUNNING, FeederStatus

log = logging.getLogger("webapp")


@dataclass
class Health:
    """What the pages, /api/status and /readyz say about the cache and its feeder."""

    redis_ok: bool
    redis_reason: str | None
    version: int | None
    customers: int | None
    feeder: FeederStatus | None  # None: the feeder has never reported (or Redis is down)
    feeder_age_s: float | None
    feeder_fresh: bool
    problems: list[str] = field(default_factory=list)

    @property
    def kafka_ok(self) -> bool | None:
        return self.feeder.kafka_ok if self.feeder is not None and self.feeder_fresh else None

    @property
    def signature(self) -> str:
        f = self.feeder
        state = f"{f.state}:{f.kafka_ok}:{f.restarts}:{f.registry_reason is None}" if f else "none"
        return f"r{int(self.redis_ok)}f{int(self.feeder_fresh)}:{state}"

    @property
    def figures(self) -> str:
        """Changes when the feeder's published figures do (``FeederStatus.figures``)."""
        return self.feeder.figures if self.feeder is not None else ""

    def as_json(self) -> dict[str, Any]:
        return {
            "redis": {"ok": self.redis_ok, "reason": self.redis_reason},
            "kafka": {"ok": self.kafka_ok, "reason": self.feeder.kafka_reason if self.feeder else None},
            "feeder": None if self.feeder is None else {**self.feeder.as_json(), "fresh": self.feeder_fresh},
            "version": self.version,
            "customers": self.customers,
            "problems": self.problems,
            "signature": self.signature,
            "figures": self.figures,
        }


def health_from(settings: WebSettings, version: int | None, status: FeederStatus | None, customers: int | None,
                redis_reason: str | None = None, now: float | None = None) -> Health:
    if redis_reason is not None:
        return Health(False, redis_reason, None, None, None, None, False, [f"Redis is unreachable: {redis_reason}"])
    problems: list[str] = []
    age = status.age_s(now) if status is not None else None
    fresh = status is not None and age is not None and age <= settings.feeder_stale_s and status.state != "stopped"
    if status is None:
        problems.append("the feeder has not reported yet: nothing feeds the cache (python -m webapp.feeder)")
    elif not fresh:
        problems.append(f"the feeder has not reported for {age:.0f}s (last state: {status.state}): "
                        "the cache is not being updated")
    else:
        if status.state != RUNNING:
            problems.append(f"the feeder is {status.state}" + (f" after: {status.last_error}" if status.last_error
                                                                else ""))
        if status.kafka_ok is False:
            problems.append(f"Kafka is unreachable: {status.kafka_reason}")
        elif status.kafka_ok is None:
            problems.append(f"Kafka not confirmed reachable yet: {status.kafka_reason}")
        if status.registry_reason:
            problems.append(f"the Schema Registry is unreachable: {status.registry_reason}")
    return Health(True, None, version, customers, status, age, fresh, problems)


class Runtime:
    def __init__(self, settings: WebSettings):
        self.settings = settings
        self.redis = cache_mod.connect(settings.redis_url, settings.redis_password, timeout=2.0)
        self.cache = CacheReader(self.redis, search_max_matches=settings.search_max_matches)
        self._publisher: Publisher | None = None
        self._publisher_lock = threading.Lock()
        self.rng = random.SystemRandom()  # ids and random choices of the UI's actions
        self._closed = False

    def health(self) -> Health:
        try:
            version, status, customers = self.cache.version_and_status()
        except RedisError as exc:
            return health_from(self.settings, None, None, None, redis_reason=one_line(exc))
        return health_from(self.settings, version, status, customers)

    # -- publishing ---------------------------------------------------------------------------------------------
    def publisher(self) -> Publisher:
        """The seed's publisher, built on first use (the page works while the proxy/registry are down)."""
        with self._publisher_lock:
            if self._publisher is None:
                self._publisher = make_publisher(self.settings.publisher)
            return self._publisher

    def publish(self, topic: Topic, customer_id: str, record: Mapping[str, Any]) -> int:
        try:
            publisher = self.publisher()
        except Exception as exc:  # building a Kafka producer / registry client can fail on bad config
            raise PublishError(self.settings.transport, topic.name, f"cannot create the publisher: {exc}") from None
        acked = publisher.publish(topic, [(customer_id, record)])
        if acked != 1:
            raise PublishError(self.settings.transport, topic.name, f"{acked} of 1 records acknowledged")
        return acked

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._publisher_lock:
            if self._publisher is not None:
                try:
                    self._publisher.close()
                except Exception:
                    log.warning("publisher close failed", exc_info=True)
                self._publisher = None
        self.redis.close()


class StartupError(RuntimeError):
    """A dependency the server cannot start without; ``str()`` is the one line the entry point prints."""


def redis_address(url: str) -> str:
    """Where REDIS_URL points, without the password it may carry."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return f"unix://{parsed.path}"
    return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 6379}{parsed.path or '/0'}"


def wait_for_redis(settings: WebSettings, poll_s: float = 0.5) -> None:
    """Before serving: Redis answers PING within STARTUP_WAIT_S (it may still be starting beside us).
    Later outages are reported by /readyz and the page instead; only a start without it is refused."""
    client = cache_mod.connect(settings.redis_url, settings.redis_password, timeout=2.0, name="startup")
    deadline = time.monotonic() + settings.startup_wait_s
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError) as exc:
                # An answer (wrong or missing password): waiting will not change it.
                raise StartupError(
                    f"Redis at {redis_address(settings.redis_url)} refused the connection "
                    f"({settings.env_name('redis_password')} / {settings.env_name('redis_url')}): {one_line(exc)}"
                ) from None
            except RedisError as exc:
                if time.monotonic() >= deadline:
                    raise StartupError(
                        f"Redis unreachable at {redis_address(settings.redis_url)} ({settings.env_name('redis_url')}): "
                        f"{one_line(exc)} (waited {settings.startup_wait_s:g}s, {settings.env_name('startup_wait_s')})"
                    ) from None
            time.sleep(poll_s)
    finally:
        client.close()
