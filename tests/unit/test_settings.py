from __future__ import annotations

import dataclasses

import pytest

from common import settings as s


@dataclasses.dataclass(frozen=True)
class Demo:
    servers: str = s.env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", s.bootstrap_servers, "host:port[,host:port]")
    redis: str = s.env("REDIS_URL", "redis://redis:6379/0", s.redis_url, "redis://host:port/db")
    rate: float = s.env("RATE", 0.0, s.non_negative_float, "a number >= 0")
    share: float = s.env("SHARE", 0.1, s.fraction, "a fraction 0..1")
    mode: str = s.env("MODE", "rest", s.choice("rest", "kafka"), "rest or kafka")
    flag: bool = s.env("FLAG", False, s.boolean, "true or false")


def test_defaults_without_environment():
    assert s.load(Demo, {}) == Demo()


def test_values_are_parsed():
    got = s.load(Demo, {"KAFKA_BOOTSTRAP_SERVERS": "a:1, b:2", "RATE": "2.5", "MODE": "kafka", "FLAG": "yes"})
    assert (got.servers, got.rate, got.mode, got.flag) == ("a:1,b:2", 2.5, "kafka", True)


@pytest.mark.parametrize(
    "name,value",
    [("KAFKA_BOOTSTRAP_SERVERS", "nohost"), ("KAFKA_BOOTSTRAP_SERVERS", "a:99999"), ("REDIS_URL", "http://x"),
     ("RATE", "-1"), ("RATE", "nan"), ("SHARE", "1.5"), ("MODE", "grpc"), ("FLAG", "maybe")],
)
def test_invalid_value_names_the_variable_and_the_expected_form(name, value):
    with pytest.raises(s.ConfigError) as err:
        s.load(Demo, {name: value})
    assert name in str(err.value)
    assert "expected" in str(err.value)


def test_env_names_lists_every_variable():
    assert s.env_names(Demo) == ["KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "RATE", "SHARE", "MODE", "FLAG"]


@dataclasses.dataclass(frozen=True)
class Embedding:
    servers: str = s.same_as(Demo, "servers")


def test_same_as_reads_the_same_variable_default_and_parser():
    assert s.env_names(Embedding) == ["KAFKA_BOOTSTRAP_SERVERS"]
    assert s.load(Embedding, {}).servers == "localhost:9092"
    assert s.load(Embedding, {"KAFKA_BOOTSTRAP_SERVERS": "a:1"}).servers == "a:1"
    with pytest.raises(s.ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        s.load(Embedding, {"KAFKA_BOOTSTRAP_SERVERS": "nohost"})
