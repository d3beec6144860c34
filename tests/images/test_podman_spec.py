"""tests/support/podman.container_argv: a pod spec's container -> the run command line (no engine needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.podman import ContainerSpecError, Engine, container_argv, quantity_bytes

PODMAN = Engine("/usr/bin/podman")
DOCKER = Engine("/usr/bin/docker")
POD = {
    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True, "fsGroup": 185},
    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                {"name": "delta", "persistentVolumeClaim": {"claimName": "d"}},
                {"name": "token", "projected": {"sources": []}}],
}
CONTAINER = {
    "name": "web", "image": "marketing-engine/app:0.1.0", "command": ["gunicorn", "-c", "python:x"],
    "env": [{"name": "A", "value": "1"}, {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]}},
    "resources": {"limits": {"memory": "1280Mi", "cpu": "500m"}},
    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "delta", "mountPath": "/data/delta"},
                     {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
}


def _argv(engine: Engine = PODMAN, pod=POD, container=CONTAINER, **kw) -> list[str]:
    kw.setdefault("env", {"S": "secret"})
    kw.setdefault("volumes", {"delta": Path("/host/delta")})
    kw.setdefault("omit_volumes", ("token",))
    return container_argv(pod, container, image="img:1", engine=engine, name="n", **kw)


def test_the_spec_becomes_flags_as_the_kubelet_applies_it():
    argv = _argv()
    joined = " ".join(argv)
    assert argv[:2] == ["/usr/bin/podman", "run"] and "--network host" in joined
    assert "--user 10001:10001" in joined and "--group-add 185" in joined
    assert "--read-only --read-only-tmpfs=false" in joined
    assert "--cap-drop=ALL" in argv and "--security-opt no-new-privileges" in joined
    assert f"--memory {1280 * 2**20}" in joined and "--cpus 0.5" in joined
    assert "--env A=1" in joined and "--env S=secret" in joined
    assert "--tmpfs /tmp:rw,mode=1777,exec,size=268435456" in joined
    assert "--volume /host/delta:/data/delta" in joined and "serviceaccount" not in joined
    # command replaces the ENTRYPOINT (and the image's CMD); no args: nothing after the image
    assert json.loads(argv[argv.index("--entrypoint") + 1]) == ["gunicorn", "-c", "python:x"]
    assert argv[-1] == "img:1"


def test_args_without_command_keep_the_image_entrypoint():
    argv = _argv(container={**CONTAINER, "command": None, "args": ["driver", "--x"]})
    assert "--entrypoint" not in argv and argv[-3:] == ["img:1", "driver", "--x"]


def test_docker_gets_no_podman_only_flags():
    argv = _argv(DOCKER)
    assert "--read-only" in argv and "--read-only-tmpfs=false" not in argv and "--pull=never" not in argv


def test_what_cannot_be_reproduced_is_named():
    with pytest.raises(ContainerSpecError, match="give a value for S"):
        _argv(env={})
    with pytest.raises(ContainerSpecError, match=r"volume delta \(persistentVolumeClaim\): give a host path"):
        _argv(volumes={})
    with pytest.raises(ContainerSpecError, match="runAsNonRoot but the user is '0'"):
        _argv(pod={**POD, "securityContext": {**POD["securityContext"], "runAsUser": 0}})
    with pytest.raises(ContainerSpecError, match="runAsNonRoot but the user is 'root'"):
        _argv(pod={**POD, "securityContext": {"runAsNonRoot": True}}, image_user="root")


def test_memory_quantities():
    assert quantity_bytes("1Gi") == 2**30 and quantity_bytes("500M") == 500 * 10**6 and quantity_bytes(1000) == 1000
    with pytest.raises(ContainerSpecError):
        quantity_bytes("1280m")  # milli-bytes: a Spark size written where a quantity belongs
