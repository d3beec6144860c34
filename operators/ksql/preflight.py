"""What the operator checks at startup, before kopf talks to anything: the Kubernetes API credentials
and ksqlDB. Each problem becomes one :class:`PreflightError` line naming the dependency, the address
tried and the setting that points there (the startup handler prints it and exits non-zero), instead of
kopf's login tracebacks or an operator that retries forever against a wrong URL."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from operators.ksql.client import KsqlClient, KsqlError, Unavailable
from operators.ksql.settings import OperatorSettings

MAX_DETAIL = 200


class PreflightError(Exception):
    pass


# What a connection failure comes down to (urllib3/requests wrap it in several layers of text).
_CAUSES = (("Connection refused", "connection refused"), ("NameResolutionError", "host name does not resolve"),
           ("Name or service not known", "host name does not resolve"), ("timed out", "timed out"),
           ("Read timed out", "timed out"), ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    cause = next((short for marker, short in _CAUSES if marker in text), None)
    if cause:
        return cause
    return text if len(text) <= MAX_DETAIL else text[:MAX_DETAIL] + "..."


def kubernetes() -> str:
    """Load the credentials kopf's ``login_via_client`` will use (in-cluster, else kubeconfig) and ask
    the API server for ``/version``. Returns where it is; raises PreflightError."""
    from kubernetes import client, config  # imported here: only the operator process needs it

    kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        config.load_incluster_config()
        setting = "the in-cluster ServiceAccount (KUBERNETES_SERVICE_HOST/PORT, mounted token)"
    except config.ConfigException as in_cluster:
        try:
            config.load_kube_config()
        except Exception as exc:  # noqa: BLE001 - every kubeconfig problem is the same one line
            raise PreflightError(
                f"Kubernetes API: no credentials: not in a cluster ({_short(in_cluster)}) and no usable "
                f"kubeconfig at {kubeconfig} (set KUBECONFIG): {_short(exc)}") from None
        setting = f"the kubeconfig at {kubeconfig} (KUBECONFIG)"
    configuration = client.Configuration.get_default_copy()
    configuration.retries = 0  # one attempt, no urllib3 "Retrying" lines around ours
    host = configuration.host
    try:
        client.VersionApi(client.ApiClient(configuration)).get_code(  # any 2xx will do
            _request_timeout=10, _preload_content=False)
    except client.ApiException as exc:
        what = "refused the credentials" if exc.status in (401, 403) else "answered /version with"
        raise PreflightError(f"Kubernetes API at {host} (from {setting}) {what}: HTTP {exc.status} "
                             f"{exc.reason}") from None
    except Exception as exc:  # noqa: BLE001 - urllib3 connection errors of every kind
        raise PreflightError(f"Kubernetes API at {host} (from {setting}) unreachable: {_short(exc)}") from None
    return host


def ksqldb(settings: OperatorSettings, *, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> str:
    """Wait up to ``KSQL_STARTUP_TIMEOUT_SECONDS`` for ksqlDB's ``/info`` (ksqlDB may start after the
    operator: a JVM, its command topic replayed). Something that answers but is not ksqlDB fails at
    once. Returns ksqlDB's version; raises PreflightError."""
    url = settings.ksqldb_url
    client = KsqlClient(url, timeout=min(settings.request_timeout, 10.0))
    deadline = clock() + settings.startup_timeout
    while True:
        try:
            info = client.info()
        except Unavailable as exc:
            if clock() >= deadline:
                raise PreflightError(f"ksqlDB at {url} (KSQLDB_URL) unreachable for "
                                     f"{settings.startup_timeout:g}s (KSQL_STARTUP_TIMEOUT_SECONDS): "
                                     f"{_short(exc)}") from None
            sleep(min(5.0, max(0.1, deadline - clock())))
            continue
        except KsqlError as exc:
            raise PreflightError(f"ksqlDB at {url} (KSQLDB_URL): /info refused, not a ksqlDB REST endpoint? "
                                 f"{_short(exc)}") from None
        if not info.get("version"):
            raise PreflightError(f"ksqlDB at {url} (KSQLDB_URL): /info has no KsqlServerInfo: "
                                 "not a ksqlDB REST endpoint?")
        return str(info["version"])
