"""A pipeline job in the Spark image, run as its SparkApplication's driver pod runs it: the image's
entrypoint in `driver` mode with the properties file the submission writes (master = the CR's
driver.kubernetesMaster, the CR's sparkConf, driver memory and Java options), the CR's env, uid,
security context, memory limit and volumes; against the real broker and the registry double. The Delta
volume is a host directory: the job's commit must land there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas import topics
from tests.engines.test_spark_pipeline import T0, order
from tests.images.conftest import BuiltImage
from tests.manifests.chart import driver_only, render, spark_pods
from tests.support import pipeline, podman

CONF_VOLUME = "spark-conf-volume-driver"  # what Spark on Kubernetes names the driver's properties ConfigMap


def driver_pod(app: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod spec, container) of the application's driver, with the properties volume Spark adds."""
    (driver, *_) = spark_pods(app)
    spec = {**driver.spec, "volumes": [*driver.spec["volumes"], {"name": CONF_VOLUME, "configMap": {}}]}
    container = dict(spec["containers"][0])
    container["volumeMounts"] = [*container["volumeMounts"], {"name": CONF_VOLUME, "mountPath": "/opt/spark/conf"}]
    container["args"] = ["driver", "--properties-file", "/opt/spark/conf/spark.properties",
                         "--class", "org.apache.spark.deploy.PythonRunner", app["spec"]["mainApplicationFile"]]
    return spec, container


def driver_properties(app: dict[str, Any]) -> str:
    """The driver's spark.properties, as the submission fills it from the CR (the Kubernetes keys left out:
    no API server here)."""
    spec, driver = app["spec"], app["spec"]["driver"]
    props = {"spark.app.name": app["metadata"]["name"], "spark.master": driver["kubernetesMaster"],
             "spark.submit.deployMode": "client", "spark.driver.cores": str(driver["cores"]),
             "spark.driver.memory": driver["memory"], **spec.get("sparkConf", {})}
    if "javaOptions" in driver:
        props["spark.driver.extraJavaOptions"] = driver["javaOptions"]
    return "".join(f"{key}={value}\n" for key, value in props.items())


def run_driver(engine: podman.Engine, spec: dict[str, Any], container: dict[str, Any], image: BuiltImage, name: str,
               env: dict[str, str], volumes: dict[str, Path]) -> tuple[str, str]:
    """Run the driver container to its end; (its log, a summary without Java stack frames) once it exited 0
    without a Python traceback."""
    argv = podman.container_argv(spec, container, image=image.tag, engine=engine, name=name, env=env, volumes=volumes)
    done = podman.run_to_end(engine, argv, name, timeout=600)
    log = done.stdout + done.stderr
    summary = "\n".join(line for line in log.splitlines() if not line.lstrip().startswith("at "))[-6000:]
    assert done.returncode == 0, summary
    assert "Traceback" not in log, summary
    return log, summary


def _delta_commits(table: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted((table / "_delta_log").glob("*.json")) for line in f.read_text().splitlines()]


def test_bronze_in_the_spark_image_commits_to_delta_on_the_mounted_volume(
        tmp_path, engine: podman.Engine, spark_image: BuiltImage, spark_apps, kafka_broker, schema_registry,
        container_name):
    app = spark_apps["bronze"]
    assert driver_only(app), "the default pipeline runs each job in its driver pod"
    spec, container = driver_pod(app)
    delta_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "delta")

    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, delta_mount, pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, settings)
    produced = pipeline.produce(kafka_broker, settings, [
        (topics.ORDER_PLACED, f"o{i}", order(f"o{i}", f"c{i % 3}", T0 + i, 10.0 + i)) for i in range(12)])

    delta = podman.prepare_volume(tmp_path / "delta", spec)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark.properties").write_text(driver_properties(app))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "SCHEMA_REGISTRY_URL": schema_registry.url,
        "TOPIC_PREFIX": settings.topic_prefix,
        "TRIGGER_INTERVAL": "available-now",  # drain what is there and end (the CR: a streaming trigger)
        "SPARK_DRIVER_BIND_ADDRESS": "127.0.0.1",  # status.podIP in the pod
        "SPARK_CONF_DIR": "/opt/spark/conf",
    }
    log, summary = run_driver(engine, spec, container, spark_image, container_name, env,
                              {"delta": delta, CONF_VOLUME: conf})

    table = Path(delta, settings.table("bronze", "order_placed").removeprefix(delta_mount).lstrip("/"))
    assert (table / "_delta_log" / "00000000000000000000.json").is_file(), sorted(p.name for p in delta.rglob("*"))[:50]
    actions = _delta_commits(table)
    written = sum(json.loads(a["add"]["stats"])["numRecords"] for a in actions if "add" in a)
    assert written == produced == 12
    assert any(a.get("commitInfo", {}).get("operation") in ("STREAMING UPDATE", "WRITE", "MERGE") for a in actions)
    assert table.stat().st_uid == spec["securityContext"]["runAsUser"]


def test_erasure_in_the_spark_image_answers_a_request_from_the_topic(
        tmp_path, engine: podman.Engine, spark_image: BuiltImage, kafka_broker, schema_registry, container_name):
    """The chart's ScheduledSparkApplication template (spark/jobs/erasure.py --from-topic) run as its driver
    pod: it imports what it needs from the image (the spark image has no webapp/: the customer-id rule
    lives in schemas/), reads the request from the erasure topic, decodes it with the registry, answers it
    (no table holds the id yet: "unknown customer id", exit 0, as a request is answered, not failed) and
    writes its report table on the mounted Delta volume."""
    from forget import request
    from forget.settings import ForgetSettings

    # as `make pipeline` renders it (pipeline.enabled=true, the Spark image's tag)
    objects = render((), ("pipeline.enabled=true", f"images.spark.tag={spark_image.tag.rsplit(':', 1)[1]}"))
    (scheduled,) = [o for o in objects if o["kind"] == "ScheduledSparkApplication"]
    assert scheduled["spec"]["template"]["image"] == spark_image.tag
    app = {**scheduled, "kind": "SparkApplication", "spec": scheduled["spec"]["template"]}
    assert app["spec"]["arguments"] == ["--from-topic"]
    spec, container = driver_pod(app)
    container["args"] = [*container["args"], *app["spec"]["arguments"]]  # what spark-submit appends
    delta_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "delta")
    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, delta_mount, pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, settings)
    forget = ForgetSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
                                      "SCHEMA_REGISTRY_URL": schema_registry.url, "TOPIC_PREFIX": settings.topic_prefix})
    record = request.build("cust-never-seen", "image test")
    request.publish(forget, record)
    delta = podman.prepare_volume(tmp_path / "delta", spec)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark.properties").write_text(driver_properties(app))
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, "SCHEMA_REGISTRY_URL": schema_registry.url,
           "TOPIC_PREFIX": settings.topic_prefix, "SPARK_DRIVER_BIND_ADDRESS": "127.0.0.1",
           "SPARK_CONF_DIR": "/opt/spark/conf"}
    log, summary = run_driver(engine, spec, container, spark_image, container_name, env,
                              {"delta": delta, CONF_VOLUME: conf})
    assert (f"erasure: customer cust-never-seen: unknown customer id (request {record['request_id']})") in log, summary
    report = Path(delta, settings.table("erasure", "report").removeprefix(delta_mount).lstrip("/"))
    assert (report / "_delta_log" / "00000000000000000000.json").is_file()
    assert record["request_id"] in "\n".join(json.dumps(a) for a in _delta_commits(report)) or any(
        p.suffix == ".parquet" for p in report.iterdir())
