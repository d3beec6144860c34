"""One source of truth for the ksqlDB topology: ksql/*.sql. Helm can only read files inside the chart, so
`make chart-sync` copies them to charts/marketing-engine/files/ksql/; these tests fail when the copy
drifts and check the ConfigMap carries the files byte for byte, labelled for the operator."""

from __future__ import annotations

import tarfile
from pathlib import Path

import yaml

from tests.manifests.chart import CHART, REPO, by_kind, default_values, helm, render

SOURCE = REPO / "ksql"
COPY = CHART / "files" / "ksql"
FIX = "run `make chart-sync` (ksql/*.sql is the source; the chart holds a copy)"


def _files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.sql"))}


def test_there_is_a_topology():
    assert _files(SOURCE), "ksql/*.sql is empty"


def test_chart_copy_equals_the_source():
    source, copy = _files(SOURCE), _files(COPY)
    assert sorted(copy) == sorted(source), f"file sets differ: {FIX}"
    changed = [name for name in source if source[name] != copy[name]]
    assert changed == [], f"{changed} differ: {FIX}"


def test_no_other_files_in_the_copy():
    extra = [p.name for p in COPY.iterdir() if p.suffix != ".sql"]
    assert extra == []


def test_configmap_carries_the_files_exactly():
    (cm,) = [c for c in by_kind(render(()), "ConfigMap") if c["metadata"]["name"] == "marketing-engine-ksql"]
    source = {name: data.decode() for name, data in _files(SOURCE).items()}
    assert cm["data"] == source
    assert sum(len(v.encode()) for v in cm["data"].values()) < 900 * 1024, "ConfigMaps are limited to 1 MiB"


def test_configmap_is_labelled_for_the_operator():
    (cm,) = [c for c in by_kind(render(()), "ConfigMap") if c["metadata"]["name"] == "marketing-engine-ksql"]
    key, _, value = default_values()["operator"]["configMapLabel"].partition("=")
    assert cm["metadata"]["labels"][key] == value
    # ... and a different selector moves the label with it
    (cm2,) = [c for c in by_kind(render((), ("operator.configMapLabel=example.com/topology=v2",)), "ConfigMap")
              if c["metadata"]["name"] == "marketing-engine-ksql"]
    assert cm2["metadata"]["labels"]["example.com/topology"] == "v2"


def test_operator_applies_the_files_in_key_order():
    """The operator orders a ConfigMap's .sql keys by name; the files are numbered so that order is right."""
    names = sorted(_files(SOURCE))
    assert all(name[:3].isdigit() for name in names), names


def test_packaged_chart_carries_the_topology(tmp_path):
    """`helm package` (what a chart repository would serve) keeps the SQL: no symlinks, nothing ignored."""
    helm("package", str(CHART), "--destination", str(tmp_path))
    (tgz,) = tmp_path.glob("marketing-engine-*.tgz")
    with tarfile.open(tgz) as tar:
        packaged = {Path(m.name).name for m in tar.getmembers() if "/files/ksql/" in m.name}
        assert not any(m.issym() or m.islnk() for m in tar.getmembers())
    assert packaged == set(_files(SOURCE))
    out = helm("template", "marketing-engine", str(tgz), "--namespace", "marketing-engine").stdout
    (cm,) = [d for d in yaml.safe_load_all(out) if d and d["metadata"]["name"] == "marketing-engine-ksql"]
    assert sorted(cm["data"]) == sorted(_files(SOURCE))
