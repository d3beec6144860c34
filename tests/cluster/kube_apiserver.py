"""A real etcd + kube-apiserver (no kubelet, no controllers, no scheduler) on free 127.0.0.1 ports.

Binaries come from `scripts/kube-binaries.sh` (.cache/kube/bin, override with KUBE_BIN_DIR).
The API server runs with RBAC (and Node) authorization, the default admission plugins, a static
token for an admin user in `system:masters`, a self-signed serving cert in its --cert-dir and a
generated service-account signing key, so ServiceAccount tokens minted through the TokenRequest
API are real bound tokens checked by the real authenticator.

Nothing runs controllers: objects that need kube-controller-manager (Deployments rolling out,
namespace finalization on delete, ServiceAccount token Secrets, garbage collection) will not
progress. CRDs, validation, admission, RBAC, TokenRequest and server-side apply all work.
(A deleted PVC/PV stays `Terminating`: its protection finalizer is removed by a controller.)

`Helm` runs the pinned Helm (`make helm-tool`: .cache/bin/helm, override with HELM_BIN) against such a
server; `KubeAPIServer.apply_crds` installs CRDs from YAML files and waits until they are Established.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.support.paths import CACHE
from tests.support.procs import ServerProcess, free_port

BIN_DIR = Path(os.environ.get("KUBE_BIN_DIR") or CACHE / "kube" / "bin")
ADMIN_USER = "test-admin"
ADMIN_GROUPS = ("system:masters",)
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"  # configuration only: nothing routes traffic here
START_TIMEOUT = float(os.environ.get("KUBE_APISERVER_START_TIMEOUT", "90"))
KUBECTL = os.environ.get("KUBECTL", "kubectl")
# The pinned Helm (mk/kind.mk HELM_VERSION, `make helm-tool`), never whatever `helm` is on PATH: Helm 3
# and 4 apply differently (Helm 4: server-side apply).
HELM_BIN = Path(os.environ.get("HELM_BIN") or CACHE / "bin" / "helm")
T = TypeVar("T")


def missing_binaries() -> list[Path]:
    return [p for p in (BIN_DIR / "etcd", BIN_DIR / "kube-apiserver") if not os.access(p, os.X_OK)]


def helm_missing() -> bool:
    return not os.access(HELM_BIN, os.X_OK)


def poll(fn: Callable[[], T], timeout: float, what: str, interval: float = 0.2,
         details: Callable[[], str] | None = None) -> T:
    """Call fn until it returns something truthy (exceptions count as "not yet"); AssertionError naming
    `what`, the last exception and `details()` (e.g. a log tail) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = fn()
            if result:
                return result
        except Exception as error:  # any failure means "not yet"
            last = error
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details else ""
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s (last error: {last!r}){extra}")
        time.sleep(interval)


@dataclass
class ServiceAccountAccess:
    namespace: str
    name: str
    token: str
    kubeconfig: Path

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@dataclass
class KubeAPIServer:
    url: str
    kubeconfig: Path  # admin (system:masters) kubeconfig
    admin_token: str
    ca_file: Path  # CA bundle that verifies the serving cert
    workdir: Path
    etcd: ServerProcess
    apiserver: ServerProcess
    startup_seconds: float = 0.0
    _clients: list = field(default_factory=list, repr=False)

    # --- access ---------------------------------------------------------------------------
    def write_kubeconfig(self, path: Path, user: str, token: str, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "test", "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)}},
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {"name": user, "context": {"cluster": "test", "user": user, "namespace": namespace}},
            ],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def api_client(self, kubeconfig: Path | None = None):
        """A kubernetes.client.ApiClient for a kubeconfig (admin by default); closed at teardown."""
        from kubernetes import config

        client = config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))
        self._clients.append(client)
        return client

    def kubectl(self, *args: str, kubeconfig: Path | None = None, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            input=input, capture_output=True, text=True, check=check, timeout=60,
        )

    def service_account_kubeconfig(self, namespace: str, name: str, *, expiration_seconds: int = 3600,
                                   audiences: list[str] | None = None) -> ServiceAccountAccess:
        """Mint a bound token for an existing ServiceAccount (TokenRequest API), write a kubeconfig for it."""
        from kubernetes import client

        core = client.CoreV1Api(self.api_client())
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=audiences or [], expiration_seconds=expiration_seconds)
        )
        token = core.create_namespaced_service_account_token(name, namespace, request).status.token
        path = self.workdir / f"kubeconfig-sa-{namespace}-{name}"
        self.write_kubeconfig(path, f"sa-{namespace}-{name}", token, namespace)
        return ServiceAccountAccess(namespace, name, token, path)

    # --- CRDs -------------------------------------------------------------------------------
    def apply_crds(self, paths: Iterable[Path], timeout: float = 30) -> list[str]:
        """Create each CRD of the YAML files, or replace it with the file's version when it exists
        (idempotent, any order of test modules); wait until all are Established. Returns their names."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        extensions = client.ApiextensionsV1Api(self.api_client())
        names = []
        for path in paths:
            # large schemas: libyaml, and no model (de)serialization by the client (seconds per CRD)
            for body in yaml.load_all(Path(path).read_text(), Loader=yaml.CSafeLoader):
                if not body:
                    continue
                name = body["metadata"]["name"]
                try:
                    extensions.create_custom_resource_definition(body, _preload_content=False)
                except ApiException as error:
                    if error.status != 409:
                        raise
                    live = json.loads(extensions.read_custom_resource_definition(
                        name, _preload_content=False).data)
                    body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
                    extensions.replace_custom_resource_definition(name, body, _preload_content=False)
                names.append(name)

        def established(name: str) -> bool:
            crd = json.loads(extensions.read_custom_resource_definition(name, _preload_content=False).data)
            return any(c["type"] == "Established" and c["status"] == "True"
                       for c in crd.get("status", {}).get("conditions") or [])

        for name in names:
            poll(lambda name=name: established(name), timeout, f"CRD {name} Established")
        return names

    # --- health / logs --------------------------------------------------------------------
    def get(self, path: str, token: str | None = None, timeout: float = 5) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path)  # noqa: S310 - always https://127.0.0.1
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def logs(self, lines: int = 80) -> str:
        return (f"--- kube-apiserver ({self.apiserver.log_path}) ---\n{self.apiserver.log_tail(lines)}\n"
                f"--- etcd ({self.etcd.log_path}) ---\n{self.etcd.log_tail(lines // 2)}")

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        try:
            self.apiserver.stop()
        finally:
            self.etcd.stop()


def _write_service_account_keys(private: Path, public: Path) -> None:
    """An ECDSA P-256 key pair (tokens are signed ES256): private key to sign, public key to verify."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))


def _start_etcd(workdir: Path) -> tuple[ServerProcess, str]:
    client_port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    proc = ServerProcess(
        "etcd",
        [str(BIN_DIR / "etcd"), "--name", "test", "--data-dir", str(workdir / "etcd-data"),
         "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"test={peer_url}", "--initial-cluster-state", "new",
         "--quota-backend-bytes", str(256 * 1024 * 1024), "--unsafe-no-fsync",
         "--log-level", "warn"],
        workdir / "etcd.log",
        env={"GOMAXPROCS": "2", "GOMEMLIMIT": "256MiB"},
    )

    def healthy() -> bool:
        with urllib.request.urlopen(client_url + "/health", timeout=1) as response:  # noqa: S310
            return json.load(response).get("health") == "true"

    try:
        proc.wait_until(healthy, 30, "healthy")
    except BaseException:
        proc.stop()
        raise
    return proc, client_url


def start_kube_apiserver(workdir: Path) -> KubeAPIServer:
    """Start etcd, then kube-apiserver, wait for /readyz and write an admin kubeconfig."""
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    admin_token = secrets.token_urlsafe(32)
    tokens = workdir / "tokens.csv"  # token,user,uid,"group1,group2"
    tokens.write_text(f'{admin_token},{ADMIN_USER},{ADMIN_USER},"{",".join(ADMIN_GROUPS)}"\n')
    tokens.chmod(0o600)
    sa_key, sa_pub = workdir / "service-account.key", workdir / "service-account.pub"
    _write_service_account_keys(sa_key, sa_pub)
    cert_dir = workdir / "certs"

    etcd, etcd_url = _start_etcd(workdir)
    try:
        port = free_port()
        apiserver = ServerProcess(
            "kube-apiserver",
            [str(BIN_DIR / "kube-apiserver"),
             f"--etcd-servers={etcd_url}",
             "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
             f"--cert-dir={cert_dir}",  # self-signed serving cert (CA + cert in apiserver.crt)
             "--authorization-mode=Node,RBAC",
             f"--token-auth-file={tokens}",
             f"--service-account-key-file={sa_pub}",
             f"--service-account-signing-key-file={sa_key}",
             f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
             f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
             # no Endpoints for the `kubernetes` Service: 127.0.0.1 is not a valid endpoint address
             "--endpoint-reconciler-type=none",
             "--profiling=false",
             "--v=0"],
            workdir / "kube-apiserver.log",
            env={"GOMAXPROCS": "2"},
        )
    except BaseException:
        etcd.stop()
        raise

    server = KubeAPIServer(
        url=f"https://127.0.0.1:{port}", kubeconfig=workdir / "kubeconfig-admin", admin_token=admin_token,
        ca_file=cert_dir / "apiserver.crt", workdir=workdir, etcd=etcd, apiserver=apiserver,
    )

    def ready() -> bool:
        return server.ca_file.exists() and server.get("/readyz", token=admin_token, timeout=2) == (200, "ok")

    try:
        apiserver.wait_until(ready, START_TIMEOUT, "ready (/readyz)")
    except BaseException as error:
        server.stop()
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise RuntimeError(f"kube-apiserver did not come up: {first_line}\n{server.logs()}") from error
    server.write_kubeconfig(server.kubeconfig, ADMIN_USER, admin_token)
    server.startup_seconds = time.monotonic() - started
    return server


def _shorten(text: str, keep: int = 700) -> str:
    """Long lines (the API server quotes whole pod templates in an immutable-field error) cut in the
    middle: the object and the reason at the end stay readable."""
    out = []
    for line in text.splitlines():
        if len(line) > 2 * keep:
            line = f"{line[:keep]} ...[{len(line) - 2 * keep} chars]... {line[-keep:]}"
        out.append(line)
    return "\n".join(out)


class HelmError(AssertionError):
    """A helm command failed: the command line, exit status and stderr (Helm's own error text)."""


@dataclass
class Helm:
    """The pinned Helm against a KubeAPIServer, always with an explicit --kubeconfig (admin by default)
    and its own config/cache/data dirs (nothing of the user's ~/.config/helm leaks in)."""

    binary: Path
    kubeconfig: Path
    home: Path

    def run(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "KUBECONFIG"))}
        env.update(HELM_CONFIG_HOME=str(self.home / "config"), HELM_CACHE_HOME=str(self.home / "cache"),
                   HELM_DATA_HOME=str(self.home / "data"))
        argv = [str(self.binary), *args, "--kubeconfig", str(self.kubeconfig)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} -> exit {proc.returncode}:\n{_shorten(proc.stderr.strip())}")
        return proc

    @staticmethod
    def _value_args(values: Iterable[Path], sets: Iterable[str]) -> list[str]:
        args: list[str] = []
        for path in values:
            args += ["-f", str(path)]
        for item in sets:
            args += ["--set", item]
        return args

    def install(self, release: str, chart: Path, namespace: str, values: Iterable[Path] = (),
                sets: Iterable[str] = (), check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("install", release, str(chart), "--namespace", namespace, "--create-namespace",
                        *self._value_args(values, sets), check=check)

    def upgrade(self, release: str, chart: Path, namespace: str, values: Iterable[Path] = (),
                sets: Iterable[str] = (), *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("upgrade", release, str(chart), "--namespace", namespace,
                        *self._value_args(values, sets), *extra)

    def rollback(self, release: str, namespace: str, revision: int) -> subprocess.CompletedProcess[str]:
        return self.run("rollback", release, str(revision), "--namespace", namespace)

    def uninstall(self, release: str, namespace: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("uninstall", release, "--namespace", namespace, check=check)

    def manifest(self, release: str, namespace: str, revision: int | None = None) -> list[dict[str, Any]]:
        """The objects Helm applied for a release (revision), as Helm stored them."""
        extra = ["--revision", str(revision)] if revision else []
        text = self.run("get", "manifest", release, "--namespace", namespace, *extra).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def status(self, release: str, namespace: str) -> dict[str, Any]:
        return json.loads(self.run("status", release, "--namespace", namespace, "-o", "json").stdout)

    def history(self, release: str, namespace: str) -> list[dict[str, Any]]:
        return json.loads(self.run("history", release, "--namespace", namespace, "-o", "json").stdout)
