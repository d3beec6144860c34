"""The chart against the code it runs: every env var the chart sets on a component is one its settings
object reads (and parses), topic names equal the topic registry, the commands and files the pods run
exist, and the in-cluster endpoints follow the conventions (docs/CONTRIBUTING-helpers.md)."""

from __future__ import annotations

import importlib
import subprocess
from typing import Any

import pytest

from common import settings as common_settings
from schemas import topics
from tests.manifests.chart import RENDER_CASES, REPO, PodSpec, by_kind, default_values, pod_specs, render

CASE_IDS = [c[0] for c in RENDER_CASES]

# component label -> (module, settings class, env vars set for the runtime rather than the settings object)
SETTINGS = {
    "web": ("webapp.settings", "WebSettings", {}),
    "web-feeder": ("webapp.feeder_settings", "FeederSettings", {}),
    "seed": ("seed.settings", "SeedSettings", {}),
    "verify": ("verify.settings", "VerifySettings", {}),
    "consistency": ("consistency.settings", "ConsistencySettings", {}),
    "ksql-operator": ("operators.ksql.settings", "OperatorSettings", {}),
    "spark": ("spark.settings", "JobSettings", {"PYTHONPATH": "where the image puts our packages",
                                                "MALLOC_ARENA_MAX": "read by glibc's malloc in the JVM"}),
}
# Containers configured by their image's own conventions, not by one of our settings classes.
NOT_SETTINGS = {
    "redis": "official Redis image: REDIS_PASSWORD/REDISCLI_AUTH feed redis-server's stdin config and redis-cli",
    "ksqldb": "Confluent image: KSQL_* variables are server properties",
    "topics": "rpk in a shell script: BROKERS, REPLICAS, TOPICS, HOME",
}
# Placeholders for values that come from Secrets or the downward API, to run the settings parsers.
FROM_REFS = {
    "SECRET_KEY": "s" * 48,
    "REDIS_PASSWORD": "p" * 32,
    "WATCH_NAMESPACE": "marketing-engine",
}


def settings_class(component: str) -> tuple[type, list[str], dict[str, str]]:
    module_name, class_name, extra = SETTINGS[component]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # the component's code is not written yet: that is a failure, not a skip
        pytest.fail(f"{module_name} cannot be imported ({exc}): the chart's {component} env is unchecked",
                    pytrace=False)
    cls = getattr(module, class_name)
    names = module.env_names() if hasattr(module, "env_names") else common_settings.env_names(cls)
    return cls, names, extra


def component_of(pod: PodSpec) -> str:
    component = pod.labels["app.kubernetes.io/component"]
    return "spark" if component.startswith("spark-") else component


def env_of(pod: PodSpec) -> dict[str, Any]:
    (container,) = pod.spec["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def literal_env(env: dict[str, Any]) -> dict[str, str]:
    return {name: (e["value"] if "value" in e else FROM_REFS[name]) for name, e in env.items()}


ALL_PODS = [(label, p) for label, values in RENDER_CASES for p in pod_specs(render(values))]


@pytest.mark.parametrize("label,pod", ALL_PODS, ids=[f"{lab}:{p.owner}" for lab, p in ALL_PODS])
def test_every_env_var_is_read_by_the_component_settings(label, pod):
    component = component_of(pod)
    if component in NOT_SETTINGS:
        return
    assert component in SETTINGS, f"{pod.owner}: component {component!r} has no settings class mapping"
    cls, names, extra = settings_class(component)
    env = env_of(pod)
    unread = sorted(set(env) - set(names) - set(extra))
    assert unread == [], f"{pod.owner} sets variables {cls.__name__} does not read: {unread}"
    # ... and every value parses (a bad value would make the component exit 2 at start).
    parsed = common_settings.load(cls, {k: v for k, v in literal_env(env).items() if k not in extra})
    if hasattr(parsed, "check"):
        parsed.check()


def test_every_component_is_mapped():
    components = {component_of(p) for _, p in ALL_PODS}
    assert components == set(SETTINGS) | set(NOT_SETTINGS)


def test_endpoints_follow_the_conventions():
    """The chart's in-cluster URLs are the defaults the settings classes carry (one convention)."""
    objects = render(())
    pods = {component_of(p): env_of(p) for p in pod_specs(objects)}
    web_cls, _, _ = settings_class("web")
    op_cls, _, _ = settings_class("ksql-operator")
    job_cls, _, _ = settings_class("spark")
    assert pods["web"]["REDIS_URL"]["value"] == web_cls().redis_url == "redis://marketing-engine-redis:6379/0"
    assert pods["ksql-operator"]["KSQLDB_URL"]["value"] == op_cls().ksqldb_url
    assert pods["ksql-operator"]["KSQL_CONFIGMAP_LABEL"]["value"] == op_cls().configmap_label
    values = default_values()
    assert values["kafka"]["bootstrapServers"] == job_cls().bootstrap_servers
    assert values["kafka"]["schemaRegistryUrl"] == job_cls().schema_registry_url
    assert values["delta"]["mountPath"] == job_cls().delta_root
    verify_cls, _, _ = settings_class("verify")
    assert pods["verify"]["KSQLDB_URL"]["value"] == verify_cls().ksqldb_url == op_cls().ksqldb_url
    assert pods["verify"]["WEB_URL"]["value"] == verify_cls().web_url
    # the probe is published as the web UI publishes (same transport, proxy and registry)
    for name in ("PUBLISH_TRANSPORT", "REST_PROXY_URL", "SCHEMA_REGISTRY_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        assert pods["verify"][name]["value"] == pods["web"][name]["value"], name


def test_the_consistency_cronjob_reads_what_the_web_ui_reads():
    """python -m consistency in the app image, its env read by ConsistencySettings.from_env (as the entry point
    reads it), the same broker and registry as the web UI, CONSISTENCY_SETTLE_S from the values."""
    objects = render(())
    (cron,) = by_kind(objects, "CronJob")
    spec = cron["spec"]
    assert spec["schedule"] == "*/2 * * * *" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["successfulJobsHistoryLimit"] == spec["failedJobsHistoryLimit"] == 1
    assert spec["startingDeadlineSeconds"] > 0 and spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    assert spec["jobTemplate"]["spec"]["ttlSecondsAfterFinished"] > 0
    pods = {component_of(p): p for p in pod_specs(objects)}
    (container,) = pods["consistency"].spec["containers"]
    assert container["command"] == ["python", "-m", "consistency"]
    assert container["image"] == pods["web"].spec["containers"][0]["image"]
    assert (REPO / "consistency" / "__init__.py").exists() and (REPO / "consistency" / "settings.py").exists()
    env = env_of(pods["consistency"])
    from consistency.settings import ConsistencySettings

    parsed = ConsistencySettings.from_env(literal_env(env))
    web = env_of(pods["web"])
    assert parsed.bootstrap_servers == web["KAFKA_BOOTSTRAP_SERVERS"]["value"] == default_values()["kafka"]["bootstrapServers"]
    assert parsed.schema_registry_url == web["SCHEMA_REGISTRY_URL"]["value"]
    assert parsed.settle_s == float(default_values()["consistency"]["settleSeconds"])
    changed = ConsistencySettings.from_env(literal_env(env_of(
        next(p for p in pod_specs(render((), ("consistency.settleSeconds=42",))) if component_of(p) == "consistency"))))
    assert changed.settle_s == 42.0
    assert not [c for c in by_kind(render((), ("consistency.enabled=false",)), "CronJob")]


def test_operator_watches_its_own_namespace():
    (deploy,) = [d for d in by_kind(render(()), "Deployment") if d["metadata"]["name"].endswith("ksql-operator")]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["kopf", "run", "--standalone"]
    assert "--namespace=marketing-engine" in container["command"]
    assert container["command"][-2:] == ["-m", "operators.ksql"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WATCH_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    liveness = [a for a in container["command"] if a.startswith("--liveness=")]
    assert liveness == ["--liveness=http://0.0.0.0:8080/healthz"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_commands_exist_in_the_code():
    """What the pods run: python -m seed, gunicorn -c python:webapp.gunicorn_conf, kopf -m operators.ksql,
    and spark/jobs/<job>.py for each SparkApplication."""
    assert (REPO / "seed" / "__main__.py").exists()
    assert (REPO / "webapp" / "gunicorn_conf.py").exists()
    assert (REPO / "operators" / "ksql" / "__init__.py").exists()
    apps = by_kind(render((), ("pipeline.enabled=true",)), "SparkApplication")
    for app in apps:
        path = app["spec"]["mainApplicationFile"].removeprefix("local:///opt/marketing-engine/")
        assert (REPO / path).is_file(), f"{app['metadata']['name']}: {path} does not exist"
        assert "if __name__ == \"__main__\":" in (REPO / path).read_text(), f"{path} is not runnable as a script"


def test_web_probe_paths_exist_in_the_app():
    health = (REPO / "webapp" / "health.py").read_text()
    (deploy,) = [d for d in by_kind(render(()), "Deployment") if d["metadata"]["name"].endswith("-web")]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        path = container[probe]["httpGet"]["path"]
        assert f'@bp.get("{path}")' in health, f"{probe} {path} is not a route of webapp/health.py"


def test_topics_equal_the_registry():
    """The topics Job creates exactly the registry's topics that no ksqlDB query creates (ksqlDB makes its
    own sink topics, compacted for tables), with the registry's partition counts."""
    expected = [(t.name, t.partitions, dict(t.config)) for t in topics.ALL_TOPICS if "ksqldb" not in t.producers]
    chart = [(t["name"], t["partitions"], t.get("config", {})) for t in default_values()["topics"]["items"]]
    assert chart == expected


def topics_job_script() -> tuple[str, dict[str, str]]:
    (job,) = [j for j in by_kind(render(()), "Job") if "-topics-" in j["metadata"]["name"]]
    container = job["spec"]["template"]["spec"]["containers"][0]
    return container["args"][0], {e["name"]: e["value"] for e in container["env"]}


def test_topics_job_gets_every_topic():
    _script, env = topics_job_script()
    specs = {name: (partitions, rest) for name, partitions, *rest in (s.split(":") for s in env["TOPICS"].split())}
    assert specs == {t.name: (str(t.partitions), [f"{k}={v}" for k, v in t.config])
                     for t in topics.ALL_TOPICS if "ksqldb" not in t.producers}


def test_topics_job_script_creates_with_config_and_alters_existing(tmp_path):
    """The Job's bash script run with an rpk TEST DOUBLE (a script that logs its arguments; `describe`
    succeeds for the topics named in EXISTING): a new topic is created with each setting as -c key=value,
    an existing one gets each setting through alter-config, a topic without settings gets neither."""
    script, env = topics_job_script()
    log = tmp_path / "rpk.log"
    rpk = tmp_path / "rpk"
    rpk.write_text('#!/bin/bash\necho "$*" >> "$RPK_LOG"\n'
                   'if [ "$1 $2" = "topic describe" ]; then [[ " $EXISTING " == *" $3 "* ]]; exit; fi\n')
    rpk.chmod(0o755)
    existing = topics.CUSTOMER_ERASURE.name
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30,
                          env={**env, "PATH": f"{tmp_path}:/usr/bin:/bin", "RPK_LOG": str(log), "EXISTING": existing})
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    brokers = f"-X brokers={env['BROKERS']}"
    assert f"topic alter-config {existing} --set cleanup.policy=compact {brokers}" in calls
    assert not any(c.startswith(f"topic create {existing} ") for c in calls)
    profile = topics.CUSTOMER_PROFILE.name
    assert f"topic create {profile} -p 3 -r {env['REPLICAS']} -c retention.ms={topics.RAW_RETENTION_MS} {brokers}" \
        in calls
    status = topics.PIPELINE_STATUS.name
    assert f"topic create {status} -p 1 -r {env['REPLICAS']} {brokers}" in calls


@pytest.mark.parametrize("component", ["seed", "topics"])
def test_job_names_change_with_their_settings(component):
    """Job pod templates are immutable: a changed setting must give a new Job name, an unchanged one the same."""
    setting = {"seed": "seed.customers=77", "topics": "topics.replicas=3"}[component]

    def name(sets: tuple[str, ...]) -> str:
        (job,) = [j for j in by_kind(render((), sets), "Job") if f"-{component}-" in j["metadata"]["name"]]
        return job["metadata"]["name"]

    assert name(()) == name(())
    assert name((setting,)) != name(())


def test_pipeline_job_overrides_apply_per_job():
    (values,) = [v for label, v in RENDER_CASES if label == "pipeline-tuned"]
    apps = {a["metadata"]["name"].rsplit("-", 1)[1]: a["spec"] for a in by_kind(render(values), "SparkApplication")}
    assert apps["bronze"]["executor"]["instances"] == 2
    assert apps["silver"]["executor"]["instances"] == 1
    assert apps["score"]["restartPolicy"]["type"] == "OnFailure"
    assert apps["score"]["restartPolicy"]["onFailureRetries"] == 3
    assert apps["score"]["restartPolicy"]["onFailureRetryInterval"] == 30  # the rest is inherited
    assert apps["gold"]["sparkConf"]["spark.sql.shuffle.partitions"] == "8"
    assert apps["silver"]["sparkConf"]["spark.sql.shuffle.partitions"] == "2"
    assert {"name": "MODEL_DIR", "value": "/data/delta/_models/propensity"} in apps["score"]["driver"]["env"]
    assert all(a["driver"]["memory"] == "768m" for a in apps.values())


def test_spark_applications_run_the_baked_image():
    """Jars are baked into the image (never spark.jars.packages / Ivy at run time) and every pod gets the
    Delta volume at DELTA_ROOT, PYTHONPATH to our code, and explicit restart retries and intervals."""
    values = default_values()
    for app in by_kind(render((), ("pipeline.enabled=true",)), "SparkApplication"):
        spec = app["spec"]
        conf = spec["sparkConf"]
        assert not any(k.startswith("spark.jars") for k in conf), conf
        assert spec["image"] == "marketing-engine/spark:0.1.0"
        assert spec["type"] == "Python" and spec["sparkVersion"] == "4.1.1"
        policy = spec["restartPolicy"]
        assert policy["type"] in {"Always", "OnFailure"}
        assert {"onFailureRetries", "onFailureRetryInterval", "onSubmissionFailureRetries",
                "onSubmissionFailureRetryInterval"} <= set(policy)
        claim = {v["name"]: v for v in spec["volumes"]}["delta"]["persistentVolumeClaim"]["claimName"]
        assert claim == "marketing-engine-delta"
        # driver-only by default: the job runs in the driver pod, so only the driver section carries pod settings
        assert spec["driver"]["kubernetesMaster"] == values["pipeline"]["driverOnly"]["master"]
        mounts = {m["name"]: m["mountPath"] for m in spec["driver"]["volumeMounts"]}
        assert mounts["delta"] == values["delta"]["mountPath"]
        env = {e["name"]: e["value"] for e in spec["driver"]["env"]}
        assert env["PYTHONPATH"] == "/opt/marketing-engine"
        assert env["DELTA_ROOT"] == values["delta"]["mountPath"]
        assert conf["spark.driver.minMemoryOverhead"] and "spark.executor.minMemoryOverhead" not in conf
        assert spec["driver"]["serviceAccount"] == "spark-operator-spark"
