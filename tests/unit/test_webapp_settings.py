"""WebSettings: defaults, the variables the chart must set, the production secret-key rule, and the
entry points' one-line failure on a bad setting."""

from __future__ import annotations

import dataclasses
import importlib
import sys
from pathlib import Path

import pytest

from common.settings import ConfigError
from common.settings import env_names as class_env_names
from seed.settings import PublisherSettings
from webapp import settings as web_settings
from webapp.settings import WebSettings

KEY = "k" * 32


def test_defaults_are_the_in_cluster_ones():
    s = WebSettings.from_env({})
    assert s.redis_url == "redis://marketing-engine-redis:6379/0"
    assert s.redis_password == ""
    assert s.port == 5000
    assert s.app_env == "production"  # safe default: the cluster never runs a dev server by accident
    assert s.consumer_group == "marketing-engine-webapp"
    assert s.cache_reset_on_start is False
    assert (s.feeder_health_port, s.feeder_batch_max, s.history_max) == (8081, 500, 20)
    assert s.bootstrap_servers == "redpanda.redpanda.svc.cluster.local:9093"
    assert s.schema_registry_url == "http://redpanda.redpanda.svc.cluster.local:8081"
    assert s.rest_proxy_url == "http://redpanda.redpanda.svc.cluster.local:8082"
    assert s.transport == "rest"


def test_env_names_list_every_variable_including_the_seed_publishers():
    names = class_env_names(WebSettings)
    assert names == web_settings.env_names()
    assert len(names) == len(set(names))
    for name in ("REDIS_URL", "REDIS_PASSWORD", "KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "REST_PROXY_URL",
                 "PUBLISH_TRANSPORT", "SECRET_KEY", "APP_ENV", "CONSUMER_GROUP", "CACHE_RESET_ON_START", "PORT",
                 "FEEDER_HEALTH_PORT", "FEEDER_BATCH_MAX", "FEEDER_STALE_S", "HISTORY_MAX"):
        assert name in names
    assert set(class_env_names(PublisherSettings)) <= set(names)


def test_the_publisher_settings_are_the_seeds_read_from_the_same_environment():
    environ = {"PUBLISH_TRANSPORT": "kafka", "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
               "SCHEMA_REGISTRY_URL": "http://reg:8081", "REST_PROXY_URL": "http://proxy:8082",
               "PUBLISH_TIMEOUT_S": "3", "PUBLISH_MAX_RETRIES": "2", "PUBLISH_BATCH_SIZE": "7"}
    s = WebSettings.from_env(environ)
    assert s.publisher == PublisherSettings.from_env(environ)
    assert isinstance(s.publisher, PublisherSettings)
    # the feeder reads the same bootstrap servers and registry
    assert (s.bootstrap_servers, s.schema_registry_url) == ("k1:9092,k2:9092", "http://reg:8081")


@pytest.mark.parametrize("name,value", [
    ("REDIS_URL", "http://redis:6379"), ("PORT", "70000"), ("PORT", "http"), ("APP_ENV", "staging"),
    ("CACHE_RESET_ON_START", "maybe"), ("PUBLISH_TRANSPORT", "carrier-pigeon"), ("KAFKA_BOOTSTRAP_SERVERS", "nohost"),
    ("CONSUMER_GROUP", "has space"), ("PAGE_SIZE", "0"), ("READY_MAX_LAG", "-1"), ("FEEDER_HEALTH_PORT", "0"),
    ("FEEDER_BATCH_MAX", "0"), ("FEEDER_STALE_S", "0"), ("FEEDER_STALE_S", "nan"), ("HISTORY_MAX", "-3"),
])
def test_an_invalid_value_names_the_variable(name, value):
    with pytest.raises(ConfigError) as err:
        WebSettings.from_env({name: value})
    assert str(err.value).startswith(f"{name}=")
    assert "\n" not in str(err.value)


def test_production_refuses_to_start_without_a_secret_key():
    with pytest.raises(ConfigError) as err:
        WebSettings.from_env({"APP_ENV": "production"}).check()
    assert "SECRET_KEY" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="too short"):
        WebSettings.from_env({"SECRET_KEY": "short"}).check()
    WebSettings.from_env({"SECRET_KEY": KEY}).check()
    WebSettings.from_env({"APP_ENV": "development"}).check()  # a throwaway per-process key


def test_the_secret_key_never_appears_in_the_settings_repr():
    s = WebSettings.from_env({"SECRET_KEY": KEY, "REDIS_PASSWORD": "pw"})
    assert KEY not in repr(s)
    assert dataclasses.replace(s, port=5001).secret_key == KEY


def test_create_app_refuses_production_without_a_secret_key():
    from webapp import create_app

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(WebSettings.from_env({"APP_ENV": "production", "CACHE_CONSUMER_ENABLED": "false"}))


def test_python_m_webapp_prints_one_line_and_exits_2_on_a_bad_setting(monkeypatch, capsys):
    from webapp.__main__ import main

    monkeypatch.setattr("os.environ", {"APP_ENV": "production"})
    assert main() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SECRET_KEY" in err
    monkeypatch.setattr("os.environ", {"REDIS_URL": "nope"})
    assert main() == 2
    assert capsys.readouterr().err.startswith("webapp: REDIS_URL='nope' is invalid")


def _load_gunicorn_conf(monkeypatch, environ):
    monkeypatch.setattr("os.environ", environ)
    sys.modules.pop("webapp.gunicorn_conf", None)
    try:
        return importlib.import_module("webapp.gunicorn_conf")
    finally:
        sys.modules.pop("webapp.gunicorn_conf", None)


def test_gunicorn_conf_checks_the_settings_before_any_worker_starts(monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        _load_gunicorn_conf(monkeypatch, {"APP_ENV": "production"})
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SECRET_KEY" in err


def test_gunicorn_conf_serves_the_app_and_starts_no_consumer(monkeypatch):
    conf = _load_gunicorn_conf(monkeypatch, {"SECRET_KEY": KEY, "PORT": "5055", "WEB_WORKERS": "3",
                                             "WEB_THREADS": "8"})
    assert conf.bind == ["0.0.0.0:5055"]
    assert (conf.workers, conf.threads, conf.worker_class) == (3, 8, "gthread")
    assert conf.preload_app is False  # each worker builds its own Redis client
    assert conf.wsgi_app == "webapp:create_app()"
    assert conf.control_socket_disable is True  # $HOME is read-only in the pod
    assert callable(conf.post_worker_init) and callable(conf.worker_exit)
    source = Path(conf.__file__).read_text()
    assert "feeder" not in source.split('"""', 2)[2], "the workers only read Redis: the feeder is its own process"


def test_the_feeder_reads_its_own_subset_declared_once_in_websettings():
    from webapp import feeder_settings
    from webapp.feeder_settings import FeederSettings

    names = feeder_settings.env_names()
    assert set(names) < set(web_settings.env_names())
    assert "SECRET_KEY" not in names and "PORT" not in names  # the feeder serves no pages
    environ = {"REDIS_URL": "redis://r:6379/2", "FEEDER_BATCH_MAX": "50", "CACHE_RESET_ON_START": "true"}
    feeder, web = FeederSettings.from_env(environ), WebSettings.from_env(environ)
    for field in dataclasses.fields(FeederSettings):
        assert getattr(feeder, field.name) == getattr(web, field.name), field.name
    with pytest.raises(ConfigError, match="FEEDER_BATCH_MAX='0' is invalid"):
        FeederSettings.from_env({"FEEDER_BATCH_MAX": "0"})
    assert "hunter2" not in repr(FeederSettings.from_env({"REDIS_PASSWORD": "hunter2"}))
