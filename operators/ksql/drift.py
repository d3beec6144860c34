"""The periodic drift check.

One operator-wide loop (not a kopf timer: kopf timers put a finalizer on every watched ConfigMap,
which would leave ConfigMaps stuck in Terminating after the operator is uninstalled). Every
``KSQL_DRIFT_INTERVAL_SECONDS`` it lists the server once (``SHOW STREAMS; SHOW TABLES; SHOW
QUERIES;``), compares it with every fully applied KSQL ConfigMap (kopf's in-memory index of them),
and for each one that lacks something it sets ``ksql.marketing-engine.io/reconcile-request``. That
annotation is part of kopf's diff base, so kopf runs the normal apply handler: the repair gets the
same planning, retries, backoff, annotations and Events as any other change.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Iterable

from operators.ksql import reconcile, state
from operators.ksql.client import KsqlError
from operators.ksql.reconcile import ConfigMapView, Runtime

log = logging.getLogger("operators.ksql.drift")

RequestReconcile = Callable[[ConfigMapView, str], None]


def check_once(rt: Runtime, configmaps: Iterable[ConfigMapView], request: RequestReconcile) -> dict[str, list[str]]:
    """One drift check. Returns the problems found per ConfigMap (``ns/name``); requests a reconcile
    for each ConfigMap that has some. ksqlDB unavailable: logs and returns nothing (next round)."""
    cms = list(configmaps)
    if not cms:
        return {}
    try:
        live = rt.client.catalog()
    except KsqlError as exc:
        log.warning("drift check skipped: %s", exc)
        return {}
    found: dict[str, list[str]] = {}
    for cm in cms:
        problems = reconcile.drift(cm, live)
        if not problems:
            continue
        found[cm.ref] = problems
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        summary = f"{stamp} drift: " + "; ".join(problems)
        log.warning("%s: %s", cm.ref, summary)
        try:
            request(cm, summary[:250])
        except Exception as exc:  # a failed patch must not stop the loop
            log.warning("%s: could not request a reconcile: %s", cm.ref, exc)
    return found


async def run(rt: Runtime, configmaps: Callable[[], Iterable[ConfigMapView]], request: RequestReconcile,
              stopped: asyncio.Event) -> None:
    """The loop: wait an interval, check, repeat; returns when ``stopped`` is set."""
    interval = rt.settings.drift_interval
    while not stopped.is_set():
        try:
            await asyncio.wait_for(stopped.wait(), timeout=interval)
            return
        except TimeoutError:
            pass
        try:
            await asyncio.to_thread(check_once, rt, list(configmaps()), request)
        except Exception:  # never let the loop die; the next round tries again
            log.exception("drift check failed")


def kubernetes_requester() -> RequestReconcile:
    """Patch ``reconcile-request`` with the official client (in-cluster config, else kubeconfig).
    Needs the ``patch configmaps`` permission the operator has anyway."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CoreV1Api()

    def request(cm: ConfigMapView, summary: str) -> None:
        body = {"metadata": {"annotations": {state.RECONCILE_REQUEST: summary}}}
        api.patch_namespaced_config_map(cm.name, cm.namespace, body)

    return request
