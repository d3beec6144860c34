"""The kopf wiring: what is registered, what the startup handler configures, how outcomes map to
kopf errors. (The operator as a real process against a real API server is the cluster tier's job.)"""

from __future__ import annotations

import asyncio
import logging

import kopf
import pytest

import operators.ksql  # noqa: F401  (registers the handlers, as `kopf run -m operators.ksql` does)
from operators.ksql import handlers, reconcile, state
from operators.ksql.client import KsqlClient
from operators.ksql.settings import OperatorSettings

REGISTRY = kopf.get_default_registry()
LOG = logging.getLogger("test")


def ours(handler_id: str):
    for group in (REGISTRY._changing, REGISTRY._indexing, REGISTRY._spawning, REGISTRY._activities):
        for h in group.get_all_handlers():
            if h.id == handler_id and getattr(h.fn, "__module__", "") == handlers.__name__:
                return h
    raise AssertionError(f"no handler {handler_id}")


def test_handlers_are_registered_for_labelled_configmaps_only():
    for hid in ["apply-resume", "apply-create", "apply-update", "drop-on-delete", handlers.INDEX]:
        h = ours(hid)
        assert h.selector.plural == "configmaps" and h.selector.version == "v1" and h.selector.group == ""
        assert h.when is handlers.selected
    assert ours("startup") and ours("cleanup") and ours("ksqldb")


def test_only_drop_policy_configmaps_get_a_finalizer_and_there_are_no_timers():
    delete = ours("drop-on-delete")
    assert delete.requires_finalizer is True and delete.annotations == {state.DELETION_POLICY: "drop"}
    for hid in ["apply-resume", "apply-create", "apply-update"]:
        assert not ours(hid).requires_finalizer
    # kopf timers/daemons would put a finalizer on every ConfigMap: the drift check is not one
    assert not [h for h in REGISTRY._spawning.get_all_handlers() if h.fn.__module__ == handlers.__name__]


def test_selected_needs_the_runtime_and_the_label():
    memo = kopf.Memo()
    assert handlers.selected({"marketing-engine.io/ksql": "true"}, "ns", memo) is False
    memo.ksql = reconcile.Runtime(OperatorSettings.from_env({}), KsqlClient("http://127.0.0.1:9"))
    assert handlers.selected({"marketing-engine.io/ksql": "true"}, "ns", memo) is True
    assert handlers.selected({"other": "true"}, "ns", memo) is False


def test_startup_configures_kopf_and_keeps_everything_in_the_memo(monkeypatch):
    configured = {}
    monkeypatch.setattr(kopf, "configure", lambda **kw: configured.update(kw))
    monkeypatch.setenv("KSQLDB_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LOG_JSON", "true")
    monkeypatch.setenv("KSQL_DRIFT_INTERVAL_SECONDS", "3600")
    monkeypatch.setattr(handlers.drift, "kubernetes_requester", lambda: (lambda cm, summary: None))
    checked = []
    monkeypatch.setattr(handlers.preflight, "kubernetes", lambda: checked.append("kubernetes") or "https://api")
    monkeypatch.setattr(handlers.preflight, "ksqldb", lambda ours: checked.append(ours.ksqldb_url) or "0.29.0")
    settings = kopf.OperatorSettings()
    memo = kopf.Memo()

    async def go():
        await handlers.startup(settings=settings, memo=memo, logger=LOG, **{handlers.INDEX: {}})
        assert isinstance(memo.ksql_drift, asyncio.Task) and not memo.ksql_drift.done()
        await handlers.cleanup(memo=memo)
        assert memo.ksql_drift.done()

    asyncio.run(go())
    assert isinstance(settings.persistence.diffbase_storage, state.DigestDiffBaseStorage)
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.persistence.progress_storage.prefix == state.KOPF_PREFIX
    assert settings.persistence.finalizer == state.FINALIZER
    assert settings.peering.standalone is True and settings.scanning.disabled is True
    assert configured["log_format"] is kopf.LogFormat.JSON
    assert memo.ksql.settings.ksqldb_url == "http://127.0.0.1:9"
    assert memo.ksql.client.base_url == "http://127.0.0.1:9"
    assert checked == ["kubernetes", "http://127.0.0.1:9"], "both dependencies checked before kopf logs in"


def test_startup_with_a_dependency_missing_exits_1_with_its_line(monkeypatch, capsys):
    monkeypatch.setenv("KSQLDB_URL", "http://127.0.0.1:9")

    def unreachable(ours):
        raise handlers.preflight.PreflightError("ksqlDB at http://127.0.0.1:9 (KSQLDB_URL) unreachable for 1s")

    monkeypatch.setattr(handlers.preflight, "kubernetes", lambda: "https://api")
    monkeypatch.setattr(handlers.preflight, "ksqldb", unreachable)
    memo = kopf.Memo()
    with pytest.raises(SystemExit) as exc:
        asyncio.run(handlers.startup(settings=kopf.OperatorSettings(), memo=memo, logger=LOG))
    assert exc.value.code == 1
    assert capsys.readouterr().err == "ksql-operator: ksqlDB at http://127.0.0.1:9 (KSQLDB_URL) unreachable for 1s\n"
    assert getattr(memo, "ksql", None) is None, "nothing started"


def test_startup_with_bad_environment_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("KSQLDB_URL", "not-a-url")
    with pytest.raises(SystemExit) as exc:
        asyncio.run(handlers.startup(settings=kopf.OperatorSettings(), memo=kopf.Memo(), logger=LOG))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KSQLDB_URL" in err


def test_probe_never_fails():
    assert handlers.probe(memo=kopf.Memo()) == {"url": None, "sequence": None}


class FakePatch:
    def __init__(self):
        self.metadata = type("M", (), {"annotations": {}})()


BODY = kopf.Body({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "x", "namespace": "ns", "uid": "u", "annotations": {}}, "data": {}})


def run_with(fn, monkeypatch):
    posted = []
    monkeypatch.setattr(kopf, "info", lambda body, reason, message: posted.append(("Normal", reason, message)))
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: posted.append(("Warning", reason, message)))
    memo = kopf.Memo()
    memo.ksql = reconcile.Runtime(OperatorSettings.from_env({}), KsqlClient("http://127.0.0.1:9"))
    patch = FakePatch()
    try:
        handlers._run(fn, BODY, memo, patch, 3, LOG)
        error = None
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        error = exc
    return error, patch.metadata.annotations, posted


def test_retry_becomes_a_temporary_error_and_still_stores_state(monkeypatch):
    def fn(cm, rt, retry):
        assert retry == 3 and cm.ref == "ns/x"
        r = reconcile.Result({state.STATE: "{}"})
        r.event("Warning", "KsqlUnavailable", "down")
        raise reconcile.Retry("down", r, 42.0)

    error, annotations, posted = run_with(fn, monkeypatch)
    assert isinstance(error, kopf.TemporaryError) and error.delay == 42.0
    assert annotations == {state.STATE: "{}"} and posted == [("Warning", "KsqlUnavailable", "down")]


def test_fail_becomes_a_permanent_error(monkeypatch):
    def fn(cm, rt, retry):
        raise reconcile.Fail("bad statement", reconcile.Result({state.STATE: "{}"}, [reconcile.Event(
            "Warning", "StatementFailed", "bad statement")]))

    error, annotations, posted = run_with(fn, monkeypatch)
    assert isinstance(error, kopf.PermanentError) and "bad statement" in str(error)
    assert posted == [("Warning", "StatementFailed", "bad statement")]


def test_success_posts_events_and_returns_nothing(monkeypatch):
    def fn(cm, rt, retry):
        return reconcile.Result({state.APPLIED_HASH: "h"}, [reconcile.Event("Normal", "Applied", "ok")], "ok")

    error, annotations, posted = run_with(fn, monkeypatch)
    assert error is None and annotations == {state.APPLIED_HASH: "h"} and posted == [("Normal", "Applied", "ok")]
