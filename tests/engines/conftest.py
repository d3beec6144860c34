"""Fixtures the web UI's engines tests share (tests/engines/test_webapp_*.py)."""

from __future__ import annotations

import pytest

from tests.engines.test_webapp_helpers import db_url, ensure_topics, flush


@pytest.fixture
def url(redis_server):
    """A flushed Redis database of the session's redis-server, flushed again afterwards."""
    url = db_url(redis_server)
    flush(url)
    yield url
    flush(url)


@pytest.fixture
def broker(kafka_broker):
    """The session's broker with the web UI's topics."""
    ensure_topics(kafka_broker)
    return kafka_broker
