"""Both images build unchanged from their Dockerfiles, and what they are made to run with matches the chart."""

from __future__ import annotations

import re
from typing import Any

from tests.images.conftest import DOCKERFILES, BuiltImage, workload
from tests.support import podman
from tests.support.paths import SPARK_JARS

APP_COMPONENTS = ("web", "web-feeder", "ksql-operator", "seed")


def _uid(spec: dict[str, Any], container: dict[str, Any]) -> tuple[int, int]:
    sc = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
    return sc["runAsUser"], sc["runAsGroup"]


def test_the_app_image_user_is_the_chart_uid(app_image: BuiltImage, rendered_chart):
    print(f"{app_image.tag}: {app_image.mib:,.0f} MiB, built in {app_image.seconds:.0f}s")
    for component in APP_COMPONENTS:
        spec, container = workload(rendered_chart, component)
        assert container["image"] == app_image.tag, component
        assert app_image.user == "{}:{}".format(*_uid(spec, container)), component


def test_the_spark_image_user_is_the_spark_applications_uid(spark_image: BuiltImage, spark_apps):
    print(f"{spark_image.tag}: {spark_image.mib:,.0f} MiB, built in {spark_image.seconds:.0f}s")
    assert set(spark_apps) == {"bronze", "silver", "gold", "score"}
    for name, app in spark_apps.items():
        driver = app["spec"]["driver"]
        assert app["spec"]["image"] == spark_image.tag, name
        assert spark_image.user == "{}:{}".format(*_uid({"securityContext": driver["podSecurityContext"]},
                                                        {"securityContext": driver["securityContext"]})), name


def test_the_app_image_holds_the_code_it_runs_and_nothing_of_the_repository_else(
        engine: podman.Engine, app_image: BuiltImage):
    listing = engine.run("run", "--rm", "--pull=never", "--network", "none", "--entrypoint", "ls", app_image.tag,
                         "/opt/marketing-engine").stdout.split()
    # What the Dockerfile copies into its WORKDIR (COPY <dir>/ <dir>/), nothing else of the repository.
    copied = re.findall(r"^COPY ([a-z_]+)/ \1/$", DOCKERFILES["app"].read_text(), re.MULTILINE)
    assert {"common", "schemas", "seed", "webapp", "operators"} <= set(copied)
    assert sorted(listing) == sorted(copied)
    # Bytecode compiled at build time (the root filesystem is read-only at run time).
    pyc = engine.run("run", "--rm", "--pull=never", "--network", "none", "--entrypoint", "sh", app_image.tag,
                     "-c", "ls /opt/marketing-engine/webapp/__pycache__ | grep -c '\\.pyc$'").stdout
    assert int(pyc) > 5


def test_the_spark_image_runs_python_3_11_with_pyspark_from_spark_home(engine: podman.Engine, spark_image: BuiltImage):
    """PYSPARK_PYTHON is the image's venv (3.11, as pyproject.toml requires) with the job's libraries;
    pyspark and py4j come from /opt/spark/python (put on the path by spark-submit); every jar that
    jars/spark-pom.xml resolves (`make jars`, what the tests run with) is baked into /opt/spark/jars."""
    script = ("import os, sys, glob; print(sys.version_info[:2] == (3, 11));"
              "sys.path[:0] = glob.glob('/opt/spark/python/lib/*.zip');"  # what spark-submit puts there
              "import numpy, fastavro, confluent_kafka, delta, pyspark; print(pyspark.__version__);"
              "print(' '.join(sorted(os.listdir('/opt/spark/jars'))))")
    done = engine.run("run", "--rm", "--pull=never", "--network", "none", spark_image.tag,
                      "/opt/venv/bin/python", "-c", script)
    lines = done.stdout.splitlines()
    assert lines[:2] == ["True", "4.1.1"], done.stdout + done.stderr
    ours = {p.name for p in SPARK_JARS.glob("*.jar")}
    assert ours and not ours - set(lines[2].split()), sorted(ours - set(lines[2].split()))
