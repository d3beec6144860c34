"""Per-process state of the web app: Redis client and cache, the cache feeder, the seed's publisher."""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import redis

from schemas.topics import Topic
from seed.publish import Publisher, PublishError, make_publisher
from webapp import cache as cache_mod
from webapp.cache import Cache, RedisError
from webapp.feeder import CacheFeeder
from webapp.settings import WebSettings

log = logging.getLogger("webapp")


@dataclass
class Health:
    """What the page, /api/status and /readyz say about the dependencies."""

    redis_ok: bool
    redis_reason: str | None
    version: int | None
    consumer: dict[str, Any] | None  # None: the consumer is disabled in this process
    problems: list[str] = field(default_factory=list)

    @property
    def kafka_ok(self) -> bool | None:
        return None if self.consumer is None else self.consumer["kafka_ok"]

    @property
    def signature(self) -> str:
        c = self.consumer or {}
        return f"r{int(self.redis_ok)}k{c.get('kafka_ok')}s{c.get('state')}a{c.get('alive')}e{c.get('restarts')}"

    def as_json(self) -> dict[str, Any]:
        return {
            "redis": {"ok": self.redis_ok, "reason": self.redis_reason},
            "kafka": {"ok": self.kafka_ok, "reason": (self.consumer or {}).get("kafka_reason")},
            "consumer": self.consumer,
            "version": self.version,
            "problems": self.problems,
            "signature": self.signature,
        }


class Runtime:
    def __init__(self, settings: WebSettings):
        self.settings = settings
        self.redis = cache_mod.connect(settings.redis_url, settings.redis_password, timeout=2.0)
        self.cache = Cache(self.redis, search_max_matches=settings.search_max_matches)
        self.feeder: CacheFeeder | None = CacheFeeder(settings) if settings.consumer_enabled else None
        self._publisher: Publisher | None = None
        self._publisher_lock = threading.Lock()
        self.rng = random.SystemRandom()  # ids and random choices of the UI's actions
        self._closed = False

    # -- dependencies ----------------------------------------------------------------------------------------
    def health(self) -> Health:
        try:
            version: int | None = self.cache.version()
            redis_ok, redis_reason = True, None
        except RedisError as exc:
            version, redis_ok, redis_reason = None, False, _one_line(exc)
        consumer = None
        if self.feeder is not None:
            if not self._closed:
                self.feeder.ensure_running()  # restarts (and reports) a consumer thread that ended
            consumer = self.feeder.status()
        problems = []
        if not redis_ok:
            problems.append(f"Redis is unreachable: {redis_reason}")
        if consumer is not None:
            if not consumer["alive"]:
                problems.append("the cache consumer thread is not running")
            elif consumer["state"] not in {"running", "waiting for redis"}:
                problems.append(f"the cache consumer is {consumer['state']}"
                                + (f" after: {consumer['last_error']}" if consumer["last_error"] else ""))
            if consumer["kafka_ok"] is False:
                problems.append(f"Kafka is unreachable: {consumer['kafka_reason']}")
            elif consumer["kafka_ok"] is None:
                problems.append(f"Kafka not confirmed reachable yet: {consumer['kafka_reason']}")
            if consumer["registry_reason"]:
                problems.append(f"the Schema Registry is unreachable: {consumer['registry_reason']}")
        return Health(redis_ok, redis_reason, version, consumer, problems)

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

    def record_action(self, kind: str, customer_id: str, topic: Topic, summary: str,
                      before: int | None = None) -> dict[str, Any]:
        """Remember a published action (shown as "sent" until the pipeline's view reflects it)."""
        action = {
            "id": uuid.uuid4().hex, "kind": kind, "customer_id": customer_id, "topic": topic.name,
            "summary": summary, "sent_ms": int(time.time() * 1000), "before": before,
        }
        self.cache.record_action(action)
        return action

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.feeder is not None:
            self.feeder.stop()
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
                    f"({settings.env_name('redis_password')} / {settings.env_name('redis_url')}): {_one_line(exc)}"
                ) from None
            except RedisError as exc:
                if time.monotonic() >= deadline:
                    raise StartupError(
                        f"Redis unreachable at {redis_address(settings.redis_url)} ({settings.env_name('redis_url')}): "
                        f"{_one_line(exc)} (waited {settings.startup_wait_s:g}s, {settings.env_name('startup_wait_s')})"
                    ) from None
            time.sleep(poll_s)
    finally:
        client.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
