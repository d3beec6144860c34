"""kopf wiring, and nothing else: the work is in ``reconcile`` (apply/delete) and ``drift``.

Imported by ``operators.ksql`` so that ``kopf run -m operators.ksql`` registers these handlers.
Importing it reads no environment and keeps no module-level state: the settings, the ksqlDB client
and the drift task are built by the startup handler and live in kopf's memo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NoReturn

import kopf

from common.settings import ConfigError
from operators.ksql import drift, preflight, reconcile, state
from operators.ksql.reconcile import ConfigMapView, Runtime
from operators.ksql.settings import OperatorSettings

RESOURCE = MappingProxyType({"group": "", "version": "v1", "plural": "configmaps"})  # core ConfigMaps
INDEX = "ksql_configmaps"  # the index handler's id == its kwarg name in other handlers


def runtime(memo: Any) -> Runtime | None:
    return getattr(memo, "ksql", None)


def selected(labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> bool:
    rt = runtime(memo)
    return rt is not None and rt.settings.selects(labels, namespace)


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings) -> None:
    """kopf's settings for this operator (called from the startup handler)."""
    # Small state only (kopf issue 1087): digest diff base, progress in annotations (ConfigMaps have
    # no status), all under our own prefix.
    settings.persistence.diffbase_storage = state.DigestDiffBaseStorage(prefix=state.KOPF_PREFIX, v1=False)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=state.KOPF_PREFIX, v1=False)
    settings.persistence.finalizer = state.FINALIZER
    settings.posting.reporting_component = "marketing-engine-ksql-operator"
    settings.posting.level = logging.INFO
    settings.networking.request_timeout = 60.0
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.execution.max_workers = 4
    settings.peering.standalone = True  # one replica; no peering objects, no RBAC for them
    # Serve exactly the namespace given with `kopf run -n`: no cluster-wide listing of namespaces or
    # CRDs (the operator's RBAC is one namespaced Role; with scanning on, kopf retries the forbidden
    # cluster-scope LIST for a minute at every start).
    settings.scanning.disabled = True
    kopf.configure(
        debug=ours.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if ours.log_json else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(ours.log_level)


def _exit(message: str, code: int) -> NoReturn:
    """One line on stderr, then the process ends with ``code``: kopf's startup runs before its login
    and watch tasks, so nothing is half-started. (The SystemExit leaves kopf's not yet started
    authenticator coroutine behind; its 'never awaited' warning would be noise around the line.)"""
    print(f"ksql-operator: {message}", file=sys.stderr, flush=True)
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    raise SystemExit(code)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger,
                  **kwargs: Any) -> None:
    try:
        ours = OperatorSettings.from_env()
    except ConfigError as exc:
        _exit(str(exc), 2)
    # Before kopf's own login: without credentials it would log ~150 lines of tracebacks; with ksqlDB
    # unreachable or misconfigured it would retry every ConfigMap forever.
    try:
        api = await asyncio.to_thread(preflight.kubernetes)
        version = await asyncio.to_thread(preflight.ksqldb, ours)
    except preflight.PreflightError as exc:
        _exit(str(exc), 1)
    logger.info("Kubernetes API %s; ksqlDB %s at %s", api, version, ours.ksqldb_url)
    configure_kopf(settings, ours)
    rt = Runtime.build(ours)
    memo.ksql = rt
    index = kwargs.get(INDEX)
    stopped = asyncio.Event()
    memo.ksql_drift_stop = stopped

    def configmaps() -> list[ConfigMapView]:
        return [view for key in list(index or {}) for view in index[key]] if index is not None else []

    try:
        requester = drift.kubernetes_requester()
    except Exception as exc:  # no credentials for the official client: drift is logged, not repaired
        logger.warning("drift repairs disabled (cannot build a Kubernetes client: %s)", exc)

        def requester(cm: ConfigMapView, summary: str) -> None:
            logger.warning("%s needs a reconcile (%s); annotate %s to trigger it", cm.ref, summary,
                           state.RECONCILE_REQUEST)
    memo.ksql_drift = asyncio.create_task(drift.run(rt, configmaps, requester, stopped), name="ksql-drift")
    logger.info("ksql operator: ksqlDB %s, ConfigMaps labelled %s%s, drift check every %.0fs",
                ours.ksqldb_url, ours.configmap_label,
                f" in {ours.watch_namespace}" if ours.watch_namespace else "", ours.drift_interval)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    stop = getattr(memo, "ksql_drift_stop", None)
    task = getattr(memo, "ksql_drift", None)
    if stop is not None:
        stop.set()
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, timeout=5)


@kopf.on.probe(id="ksqldb")
def probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Reported by the liveness endpoint (``kopf run --liveness=...``). Never fails: an unavailable
    ksqlDB is not a reason to restart the operator."""
    rt = runtime(memo)
    return {"url": rt.settings.ksqldb_url if rt else None, "sequence": rt.client.last_sequence if rt else None}


@kopf.index(**RESOURCE, id=INDEX, when=selected)
def ksql_configmaps(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], ConfigMapView]:
    return {(namespace, name): ConfigMapView.from_body(body)}


def _post(body: kopf.Body, result: reconcile.Result, patch: kopf.Patch) -> None:
    for key, value in result.annotations.items():
        patch.metadata.annotations[key] = value
    for event in result.events:
        poster = kopf.info if event.type == "Normal" else kopf.warn
        poster(body, reason=event.reason, message=event.message)


def _run(fn: Any, body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, retry: int, logger: logging.Logger,
         **kw: Any) -> None:
    # Returns nothing: kopf would store a return value in .status, which ConfigMaps do not have.
    rt = runtime(memo)
    if rt is None:  # startup did not finish: let kopf retry
        raise kopf.TemporaryError("operator not initialised yet", delay=5)
    cm = ConfigMapView.from_body(body)
    try:
        result = fn(cm, rt, retry=retry, **kw)
    except reconcile.Retry as exc:
        _post(body, exc.result, patch)
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None
    except reconcile.Fail as exc:
        _post(body, exc.result, patch)
        raise kopf.PermanentError(str(exc)) from None
    except state.StateTooLarge as exc:
        kopf.warn(body, reason="TooManyStatements", message=str(exc))
        raise kopf.PermanentError(str(exc)) from None
    except Exception as exc:
        kopf.exception(body, reason="OperatorError", message=f"{type(exc).__name__}: {exc}")
        raise
    _post(body, result, patch)
    logger.info("%s: %s", cm.ref, result.summary)


@kopf.on.resume(**RESOURCE, id="apply-resume", when=selected)
def apply_on_resume(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, retry: int, logger: logging.Logger,
                    **_: Any) -> None:
    _run(reconcile.apply, body, memo, patch, retry, logger, reason="operator start")


@kopf.on.create(**RESOURCE, id="apply-create", when=selected)
def apply_on_create(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, retry: int, logger: logging.Logger,
                    **_: Any) -> None:
    _run(reconcile.apply, body, memo, patch, retry, logger, reason="created")


@kopf.on.update(**RESOURCE, id="apply-update", when=selected)
def apply_on_update(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, retry: int, logger: logging.Logger,
                    **_: Any) -> None:
    _run(reconcile.apply, body, memo, patch, retry, logger, reason="changed")


# Only ConfigMaps asking for `drop` get a finalizer (kopf adds one for matching non-optional deletion
# handlers): with the default `keep` nothing blocks deleting a ConfigMap, operator running or not.
@kopf.on.delete(**RESOURCE, id="drop-on-delete", when=selected, annotations={state.DELETION_POLICY: "drop"})
def drop_on_delete(body: kopf.Body, memo: kopf.Memo, patch: kopf.Patch, retry: int, logger: logging.Logger,
                   **_: Any) -> None:
    _run(reconcile.delete, body, memo, patch, retry, logger)
