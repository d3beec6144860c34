"""spark/k8s/*.yaml (the SparkApplication CRs users `kubectl apply` by hand, and `make pipeline` applies)
are the chart's rendering, committed: rendering again must give the same bytes."""

from __future__ import annotations

import os
import subprocess

import yaml

from tests.manifests.chart import REPO, SPARK_K8S, by_kind, driver_only, helm_bin, render


def test_committed_files_equal_a_fresh_rendering(tmp_path):
    env = {**os.environ, "HELM": str(helm_bin())}
    proc = subprocess.run([str(REPO / "scripts" / "helm-render-pipeline.sh"), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fresh = {p.name: p.read_text() for p in sorted(tmp_path.glob("*.yaml"))}
    committed = {p.name: p.read_text() for p in sorted(SPARK_K8S.glob("*.yaml"))}
    assert sorted(fresh) == sorted(committed) == ["bronze.yaml", "gold.yaml", "score.yaml", "silver.yaml"]
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"spark/k8s/{stale} differ from the chart: run `make chart-render`"


def test_files_are_the_chart_objects_marked_as_kubectl_managed():
    rendered = by_kind(render((), ("pipeline.enabled=true",)), "SparkApplication")
    helm_objects = {a["metadata"]["name"]: a for a in rendered}
    for path in sorted(SPARK_K8S.glob("*.yaml")):
        (app,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert app["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubectl"
        twin = helm_objects[app["metadata"]["name"]]
        # driver-only (the default): the executor section is the CRD's required stub, without labels
        roles = ("driver",) if driver_only(app) else ("driver", "executor")
        assert roles == ("driver",) and "labels" not in app["spec"]["executor"]
        for role in roles:
            assert app["spec"][role]["labels"].pop("app.kubernetes.io/managed-by") == "kubectl"
            assert twin["spec"][role]["labels"].pop("app.kubernetes.io/managed-by") == "Helm"
        assert app["spec"] == twin["spec"], f"{path.name}: spec differs from the chart's"
