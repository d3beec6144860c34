"""Every rendered object against the schemas of the targeted Kubernetes (1.36, the kind node) in strict
mode (unknown fields rejected), and every SparkApplication against the Spark Operator 2.5.2 CRD schema
(../shared/schemas/spark-operator/)."""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.manifests.chart import KUBE_VERSION, RENDER_CASES, SCHEMAS, SPARK_K8S, by_kind, ref, render

SPARK_APP_SCHEMA = json.loads((SCHEMAS / "spark-operator" / "sparkapplication_v1beta2.json").read_text())
SCHEDULED_SCHEMA = json.loads((SCHEMAS / "spark-operator" / "scheduledsparkapplication_v1beta2.json").read_text())
SPARK_KINDS = {"SparkApplication": SPARK_APP_SCHEMA, "ScheduledSparkApplication": SCHEDULED_SCHEMA}
CASE_IDS = [c[0] for c in RENDER_CASES]


def test_validator_targets_the_kind_node_version():
    """kubernetes-validate picks the newest schema set <= the requested version: make sure that is 1.36."""
    versions = kubernetes_validate.utils.all_versions()
    assert "1.36.0" in versions, versions
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    assert kubernetes_validate.validate(pod, KUBE_VERSION, strict=True) == "1.36"


def test_strict_validation_catches_unknown_fields():
    """The check below is only worth something if a typo in a manifest fails it."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80, "tragetPort": 8080}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("label,values", RENDER_CASES, ids=CASE_IDS)
def test_kubernetes_objects_validate(label, values):
    objects = [o for o in render(values) if o["kind"] not in SPARK_KINDS]
    assert objects
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{ref(obj)}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{ref(obj)}: {exc.message}")
    assert errors == []


def _spark_app_errors(app: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SPARK_KINDS[app["kind"]])
    return [f"{ref(app)}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(app)]


@pytest.mark.parametrize("label,values", RENDER_CASES, ids=CASE_IDS)
def test_spark_applications_validate_against_the_crd(label, values):
    apps = by_kind(render(values), "SparkApplication") + by_kind(render(values), "ScheduledSparkApplication")
    errors = [e for app in apps for e in _spark_app_errors(app)]
    assert errors == []


def test_the_erasure_is_a_scheduled_application_of_the_erasure_job():
    (scheduled,) = by_kind(render(values=(), sets=("pipeline.enabled=true",)), "ScheduledSparkApplication")
    assert scheduled["metadata"]["name"] == "marketing-engine-erasure"
    assert scheduled["spec"]["concurrencyPolicy"] == "Forbid"
    template = scheduled["spec"]["template"]
    assert template["mainApplicationFile"].endswith("/spark/jobs/erasure.py")
    assert template["arguments"] == ["--from-topic"] and template["restartPolicy"] == {"type": "Never"}
    assert "lifecycle" not in template["driver"]  # the streaming jobs' preStop hook has nothing to stop here
    # a typo under the template is caught like one in a SparkApplication
    assert _spark_app_errors({**scheduled, "spec": {**scheduled["spec"], "template": {**template, "argumnets": []}}})


def test_pipeline_renders_four_applications():
    apps = by_kind(render(values=(), sets=("pipeline.enabled=true",)), "SparkApplication")
    assert sorted(a["metadata"]["name"] for a in apps) == [
        "marketing-engine-bronze", "marketing-engine-gold", "marketing-engine-score", "marketing-engine-silver"]


def test_crd_schema_rejects_unknown_fields():
    app = by_kind(render(values=(), sets=("pipeline.enabled=true",)), "SparkApplication")[0]
    broken = json.loads(json.dumps(app))
    broken["spec"]["driver"]["memoryy"] = "1g"
    assert _spark_app_errors(broken)


def test_committed_pipeline_files_validate():
    files = sorted(SPARK_K8S.glob("*.yaml"))
    assert [f.stem for f in files] == ["bronze", "gold", "score", "silver"]
    for f in files:
        (app,) = [d for d in yaml.safe_load_all(f.read_text()) if d]
        assert app["kind"] == "SparkApplication"
        assert app["metadata"]["namespace"] == "marketing-engine"
        assert _spark_app_errors(app) == []
