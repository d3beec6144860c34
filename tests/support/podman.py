"""Build images and run a Kubernetes container spec with podman (or Docker), as the kubelet would run it.

Reusable by any tier: ``container_argv(pod_spec, container, image=...)`` turns a pod's spec and one of
its containers (dicts as the API server stores them, or as the chart renders them) into a ``run``
command line: command/args with Kubernetes' override rules, env (``valueFrom`` only from the caller),
workingDir, volume mounts (emptyDir -> tmpfs, everything else from a host path the caller names),
the security context (uid/gid/fsGroup, read-only root filesystem, capabilities, no privilege
escalation, seccomp) and memory/cpu limits. ``--network host``, so a container reaches the test
engines on 127.0.0.1.

The engine is podman with the project's configuration (scripts/podman-env.sh), or the one named by
IMAGE_ENGINE (``docker`` works the same on Linux). See docs/images.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.paths import REPO
from tests.support.procs import ServerProcess

PODMAN_ENV_SCRIPT = REPO / "scripts" / "podman-env.sh"
STAND_IN_LABEL = "io.marketing-engine.stand-in"


class ContainerSpecError(ValueError):
    """The spec asks for something this helper cannot reproduce (or the caller did not provide)."""


@dataclass
class Engine:
    """A container engine CLI (podman or docker) with the environment it needs."""

    binary: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.binary).name

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *args]

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(self.argv(*args), env=self.environ(), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args[:3])} ... exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return done

    def build(self, dockerfile: Path, tag: str, log: Path, context: Path = REPO, pull: str = "never",
              timeout: float = 1800) -> float:
        """Build ``dockerfile`` with ``context`` (honouring its .dockerignore) as ``tag``; returns seconds.
        ``pull``: podman's --pull policy (never: the stand-in bases; missing: the real ones)."""
        args = ["build", "-f", str(dockerfile), "-t", tag]
        if self.name == "podman":
            args += [f"--pull={pull}", "--network", "host", "--layers"]
        elif pull != "never":
            args += ["--pull"]
        started = time.monotonic()
        with open(log, "wb") as out:
            done = subprocess.run(self.argv(*args, str(context)), env=self.environ(), stdout=out,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        if done.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"{self.name} build of {dockerfile.relative_to(REPO)} failed ({done.returncode}):\n{tail}")
        return time.monotonic() - started

    def inspect(self, image: str) -> dict[str, Any]:
        return json.loads(self.run("image", "inspect", image).stdout)[0]

    def size(self, image: str) -> int:
        return int(self.inspect(image)["Size"])

    def exists(self, image: str) -> bool:
        return self.run("image", "inspect", image, check=False).returncode == 0

    def remove_container(self, name: str) -> None:
        grace = ["--time", "5"] if self.name == "podman" else []
        self.run("rm", "--force", *grace, name, check=False, timeout=60)


def engine() -> Engine:
    """The engine named by IMAGE_ENGINE (default podman), configured; raises RuntimeError when unusable."""
    name = os.environ.get("IMAGE_ENGINE", "podman")
    binary = shutil.which(name)
    if binary is None:
        raise RuntimeError(f"{name} not found (IMAGE_ENGINE): .ci/run installs podman (apt-get install podman runc)")
    env: dict[str, str] = {}
    if Path(binary).name == "podman":
        done = subprocess.run(["bash", str(PODMAN_ENV_SCRIPT)], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{PODMAN_ENV_SCRIPT.relative_to(REPO)} failed: {done.stderr.strip()}")
        env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return Engine(binary, env)


# --- Kubernetes container spec -> run command line ------------------------------------------------

_QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(value: str | int) -> int:
    """A Kubernetes memory quantity ("1280Mi", "1Gi", "500M", "1000") in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kMGT])?", str(value))
    if not match:
        raise ContainerSpecError(f"not a memory quantity this helper reads: {value!r}")
    return int(float(match.group(1)) * _QUANTITY.get(match.group(2) or "", 1))


def cpu_cores(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _security(pod_spec: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The container's effective security settings: its own securityContext over the pod's."""
    pod = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}
    merged = {k: pod[k] for k in ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile") if k in pod}
    merged.update(own)
    merged["fsGroup"] = pod.get("fsGroup")
    merged["supplementalGroups"] = pod.get("supplementalGroups") or []
    return merged


def container_argv(
    pod_spec: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    image: str,
    engine: Engine,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    volumes: Mapping[str, Path] | None = None,
    limits: bool = True,
    image_user: str | None = None,
    omit_volumes: Collection[str] = (),
) -> list[str]:
    """The ``run`` command line for ``container`` of ``pod_spec`` (dicts in the API's shape).

    ``env`` overrides or adds variables (the endpoints of the test engines; every ``valueFrom`` of the
    spec must be given here, since there is no API server to resolve it). ``volumes`` maps a volume name
    to a host path for every volume that is not an emptyDir (persistentVolumeClaim, configMap, secret,
    hostPath...); ``omit_volumes`` names volumes to leave unmounted (e.g. a pod's projected ServiceAccount
    token when the test gives no API server). ``image_user``: the image's USER, to enforce runAsNonRoot
    when the spec sets no uid.
    """
    env = dict(env or {})
    volumes = dict(volumes or {})
    sc = _security(pod_spec, container)
    argv = engine.argv("run", "--rm", "--network", "host")
    if engine.name == "podman":
        argv += ["--pull=never"]
    if name:
        argv += ["--name", name]

    # --- identity: uid, gid, fsGroup and supplemental groups as extra groups (what the kubelet does)
    uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
    if uid is not None:
        argv += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
    if sc.get("runAsNonRoot"):
        effective = str(uid) if uid is not None else (image_user or "")
        if effective.split(":", 1)[0] in ("", "0", "root"):
            raise ContainerSpecError(f"{container['name']}: runAsNonRoot but the user is {effective or 'unknown'!r}: "
                                     "the kubelet would refuse to start it")
    for group in [sc.get("fsGroup"), *sc["supplementalGroups"]]:
        if group is not None:
            argv += ["--group-add", str(group)]

    # --- confinement
    if sc.get("readOnlyRootFilesystem"):
        argv += ["--read-only"]
        if engine.name == "podman":
            argv += ["--read-only-tmpfs=false"]  # podman would mount /tmp, /run writable: Kubernetes does not
    if sc.get("privileged"):
        argv += ["--privileged"]
    caps = sc.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        argv += [f"--cap-drop={cap}"]
    for cap in caps.get("add") or []:
        argv += [f"--cap-add={cap}"]
    if sc.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        argv += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":
        raise ContainerSpecError(f"{container['name']}: seccompProfile {seccomp} is not reproduced here")

    # --- resources
    if limits:
        res = (container.get("resources") or {}).get("limits") or {}
        if "memory" in res:
            argv += ["--memory", str(quantity_bytes(res["memory"]))]
        if "cpu" in res:
            argv += ["--cpus", f"{cpu_cores(res['cpu']):g}"]

    # --- environment: the spec's values, then the caller's
    missing = []
    for item in container.get("env") or []:
        if item["name"] in env:
            continue
        if "value" in item:
            argv += ["--env", f"{item['name']}={item['value']}"]
        elif "valueFrom" in item:
            missing.append(item["name"])
        else:
            argv += ["--env", f"{item['name']}="]
    if missing:
        raise ContainerSpecError(f"{container['name']}: give a value for {', '.join(missing)} (valueFrom in the spec)")
    if container.get("envFrom"):
        raise ContainerSpecError(f"{container['name']}: envFrom is not reproduced here; pass the variables in env")
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]

    # --- volumes
    declared = {v["name"]: v for v in pod_spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        if mount["name"] in omit_volumes:
            continue
        vol = declared.get(mount["name"])
        if vol is None:
            raise ContainerSpecError(f"{container['name']}: volumeMount {mount['name']} has no volume in the pod")
        read_only = ":ro" if mount.get("readOnly") else ""
        if mount["name"] in volumes:
            source = Path(volumes[mount["name"]])
            if mount.get("subPath"):
                source = source / mount["subPath"]
            argv += ["--volume", f"{source}:{mount['mountPath']}{read_only}"]
        elif "emptyDir" in vol:
            opts = ["rw", "mode=1777", "exec"]
            size = (vol.get("emptyDir") or {}).get("sizeLimit")
            if size:
                opts.append(f"size={quantity_bytes(size)}")
            argv += ["--tmpfs", f"{mount['mountPath']}:{','.join(opts)}"]
        else:
            kind = next((k for k in vol if k != "name"), "?")
            raise ContainerSpecError(f"{container['name']}: volume {mount['name']} ({kind}): give a host path in volumes")

    if container.get("workingDir"):
        argv += ["--workdir", container["workingDir"]]

    # --- command and args, with Kubernetes' rules: command replaces the ENTRYPOINT (and drops the
    # image's CMD), args replace the CMD.
    command, args = container.get("command"), container.get("args")
    if command:
        argv += ["--entrypoint", json.dumps(command)]
    argv.append(image)
    if args:
        argv += list(args)
    return argv


def prepare_volume(path: Path, pod_spec: Mapping[str, Any]) -> Path:
    """A host directory for a persistent volume, owned as the kubelet leaves it for the pod (fsGroup, g+rwx)."""
    path.mkdir(parents=True, exist_ok=True)
    pod = pod_spec.get("securityContext") or {}
    group = pod.get("fsGroup", pod.get("runAsGroup"))
    if group is not None:
        os.chown(path, pod.get("runAsUser", 0), group)
        path.chmod(0o2775)
    return path


class ContainerProcess(ServerProcess):
    """A container running in the foreground of ``<engine> run`` (its output in ``log_path``); stop()
    stops the container (SIGTERM, then SIGKILL after the grace period) and removes it."""

    def __init__(self, engine: Engine, name: str, argv: list[str], log_path: Path):
        self.engine = engine
        self.container = name
        super().__init__(name, argv, log_path, env=engine.env)

    def terminate(self, grace: int = 30) -> int:
        """SIGTERM to the container's PID 1 (what Kubernetes sends), then wait for it; the exit code."""
        self.engine.run("stop", "--time", str(grace), self.container, check=False, timeout=grace + 30)
        return self.proc.wait(grace + 30)

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.engine.run("stop", "--time", str(int(grace)), self.container, check=False, timeout=grace + 30)
        super().stop(grace)
        self.engine.remove_container(self.container)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def start(engine: Engine, argv: list[str], name: str, log_path: Path) -> ContainerProcess:
    """Start a container built by ``container_argv(..., name=name)``."""
    return ContainerProcess(engine, name, argv, log_path)


def run_to_end(engine: Engine, argv: list[str], name: str, timeout: float) -> subprocess.CompletedProcess:
    """Run a container built by ``container_argv(..., name=name)`` to completion: exit code, stdout, stderr."""
    try:
        return subprocess.run(argv, env=engine.environ(), capture_output=True, text=True, timeout=timeout)
    finally:
        engine.remove_container(name)  # after a timeout it is still running
