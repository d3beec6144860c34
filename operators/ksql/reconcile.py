"""The operator's work, free of kopf: apply one KSQL ConfigMap, tear it down, describe the outcome.

The kopf handlers (``handlers.py``) are thin: they build a :class:`ConfigMapView`, call :func:`apply`
or :func:`delete` with the :class:`Runtime` kept in kopf's memo, copy :attr:`Result.annotations` into
the patch, post :attr:`Result.events` with ``kopf.info``/``kopf.warn``, and turn :class:`Retry` /
:class:`Fail` into ``kopf.TemporaryError`` / ``kopf.PermanentError``. Tests call these functions
directly against the ksqlDB test double.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from operators.ksql import planner, state, statements
from operators.ksql.client import (
    Catalog,
    KsqlClient,
    KsqlError,
    RequestRejected,
    StatementFailed,
    SubjectRegistry,
    Unavailable,
)
from operators.ksql.planner import Record, Step
from operators.ksql.settings import OperatorSettings

log = logging.getLogger("operators.ksql")

MAX_EVENT_CHARS = 1000
# ksqlDB's messages when CREATE OR REPLACE cannot upgrade a query in place (then: TERMINATE + DROP +
# CREATE). Only these fall back: any other error must not drop a working object.
UPGRADE_REFUSED = (
    "Cannot upgrade data source",
    "Upgrades not yet supported",
    "must have matching columns",
    "not upgradeable",
)
SCHEMA_FORMATS = frozenset({"AVRO", "PROTOBUF", "JSON_SR"})
SUBJECT_POLL_MAX = 30.0  # seconds between checks while waiting for a producer's subject
MAX_FALLBACK_ROUNDS = 5


@dataclass(frozen=True)
class ConfigMapView:
    namespace: str
    name: str
    data: Mapping[str, str]
    annotations: Mapping[str, str]
    uid: str = ""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ConfigMapView:
        meta = body.get("metadata") or {}
        return cls(
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            data=dict(body.get("data") or {}),
            annotations=dict(meta.get("annotations") or {}),
            uid=str(meta.get("uid") or ""),
        )


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Result:
    annotations: dict[str, str | None] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    summary: str = ""
    executed: list[Step] = field(default_factory=list)

    def event(self, type_: str, reason: str, message: str) -> None:
        if len(message) > MAX_EVENT_CHARS:
            message = message[: MAX_EVENT_CHARS - 3] + "..."
        self.events.append(Event(type_, reason, message))


class Outcome(Exception):
    def __init__(self, message: str, result: Result):
        super().__init__(message)
        self.result = result


class Retry(Outcome):
    """Temporary: ksqlDB / the registry unavailable, a subject missing. Retry after ``delay``."""

    def __init__(self, message: str, result: Result, delay: float):
        super().__init__(message, result)
        self.delay = delay


class Fail(Outcome):
    """Permanent until the ConfigMap changes: an invalid statement, a statement ksqlDB rejects."""


@dataclass
class Runtime:
    """Everything a handler needs, built once at operator startup and kept in kopf's memo."""

    settings: OperatorSettings
    client: KsqlClient
    registry: SubjectRegistry | None = None

    @classmethod
    def build(cls, settings: OperatorSettings) -> Runtime:
        client = KsqlClient(settings.ksqldb_url, timeout=settings.request_timeout,
                            command_timeout=settings.command_timeout)
        registry = None
        if settings.schema_registry_url and settings.require_source_subjects:
            registry = SubjectRegistry(settings.schema_registry_url, timeout=settings.request_timeout)
        return cls(settings, client, registry)


# ---- apply -------------------------------------------------------------------------------------------


def _records_after(topology: statements.Topology, records: dict[str, Record]) -> list[Record]:
    """Stored records in declaration order (objects no longer declared are forgotten)."""
    out = []
    for s in topology.sources:
        rec = records.get(s.name)
        out.append(Record(s.name, s.ref, rec.digest if rec else "", rec.outcome if rec else "pending"))
    return out


def _state_annotations(topology: statements.Topology | None, records: dict[str, Record],
                       error: str | None, complete: bool, result: Result) -> None:
    ordered = _records_after(topology, records) if topology is not None else list(records.values())
    result.annotations[state.STATE] = state.encode(ordered, error)
    if complete and topology is not None:
        result.annotations[state.APPLIED_HASH] = topology.content_hash


def _subject_check(steps: list[Step], rt: Runtime) -> tuple[int, str] | None:
    """The first step that creates an Avro/Protobuf source whose Schema Registry subject is missing,
    and that subject, if any.

    With explicit columns and no subject yet, ksqlDB would register its own (all-nullable) schema
    for the producers' topic, and the producers' own registration would then be refused as
    incompatible. So the operator waits until the producers have registered theirs."""
    if rt.registry is None:
        return None
    for n, step in enumerate(steps):
        src = step.source
        if step.action not in {"create", "recreate"} or src is None or src.query:
            continue
        if src.value_format in SCHEMA_FORMATS and src.value_columns:
            subject = f"{src.topic}-value"
            if not rt.registry.subject_exists(subject):
                return n, subject
    return None


STATEMENT_EXCERPT = 200


def _fail_message(cm: ConfigMapView, step: Step, exc: KsqlError, *, proving: bool = False) -> str:
    src = step.source
    where = f"{src.file} statement {src.number} (line {src.line}, {src.name})" if src else step.name
    if proving and src is not None:
        text = src.normalized if len(src.normalized) <= STATEMENT_EXCERPT else src.normalized[:STATEMENT_EXCERPT] + "..."
        return (f"ConfigMap {cm.ref}: {where}: ksqlDB rejects the statement (EXPLAIN, before any TERMINATE/DROP; "
                f"nothing was changed): {exc} -- statement: {text}")
    verb = {"terminate": "TERMINATE", "drop": "DROP"}.get(step.action, step.action)
    return f"ConfigMap {cm.ref}: {where}: {verb} failed: {exc}"


def apply(cm: ConfigMapView, rt: Runtime, *, retry: int = 0, reason: str = "change") -> Result:
    """Bring ksqlDB to what ``cm`` declares. Returns the result; raises :class:`Retry` / :class:`Fail`
    (each carrying the result, whose annotations must still be stored)."""
    result = Result()
    settings = rt.settings
    records, _ = state.decode(cm.annotations)

    try:
        topology = statements.load(cm.data)
        planner.dependency_order(topology)  # refuse cycles before touching anything
    except (statements.StatementError, planner.PlanError) as exc:
        message = f"ConfigMap {cm.ref}: {exc}"
        result.event("Warning", "InvalidKsql", message)
        result.annotations[state.STATE] = state.encode(records.values(), str(exc))
        raise Fail(message, result) from None
    if not topology.sources:
        result.event("Warning", "NoStatements", f"ConfigMap {cm.ref} declares no stream or table (*.sql keys)")

    if not state.policy_is_valid(cm.annotations):
        result.event("Warning", "InvalidPolicy",
                     f"{state.DELETION_POLICY} must be keep or drop; using keep")
    drop_removed = state.deletion_policy(cm.annotations) == "drop"

    def unavailable(exc: Unavailable, what: str) -> Retry:
        delay = settings.backoff_delay(retry, exc.retry_after)
        message = f"ConfigMap {cm.ref}: {what}: {exc} (retrying in {delay:.0f}s)"
        result.event("Warning", "KsqlUnavailable", message)
        _state_annotations(topology, records, str(exc), False, result)
        return Retry(message, result, delay)

    ready = rt.client.ready()  # /info: answers while the command runner is busy (unlike /healthcheck)
    if not ready.healthy:
        raise unavailable(Unavailable(ready.detail), "ksqlDB not ready")

    records = dict(records)
    force: set[str] = set()
    executed: list[Step] = []
    waiting: tuple[str, str, float] | None = None  # (message, subject, delay): a producer's subject is missing
    for _round in range(MAX_FALLBACK_ROUNDS):
        try:
            live = rt.client.catalog()
        except Unavailable as exc:
            raise unavailable(exc, "cannot list streams/tables/queries") from None
        except KsqlError as exc:
            message = f"ConfigMap {cm.ref}: listing the server's objects failed: {exc}"
            result.event("Warning", "KsqlRejected", message)
            raise Fail(message, result) from None
        plan = planner.plan(topology, records, live, drop_removed=drop_removed, force_recreate=force)
        if _round == 0:
            for name in plan.unchanged:
                records[name] = Record(name, records[name].ref, records[name].digest, "unchanged")
            for name in plan.adopted:
                src = topology.by_name()[name]
                records[name] = Record(name, src.ref, planner.short(src.digest), "exists")
            if plan.adopted:
                result.event("Warning", "Adopted",
                             "already on the server, adopted as declared (definition not verified): "
                             + ", ".join(plan.adopted))
            for note in plan.notes:
                result.event("Normal", "Note", note)
        waiting = None
        try:
            missing = _subject_check(plan.steps, rt)
        except Unavailable as exc:
            raise unavailable(exc, "Schema Registry") from None
        if missing:
            at, subject = missing
            # A registry lookup is cheap, and the producers may register any moment: poll often.
            delay = min(settings.backoff_delay(retry), SUBJECT_POLL_MAX)
            message = (f"ConfigMap {cm.ref}: waiting for Schema Registry subject {subject} (registered by "
                       f"the producers) before creating the stream or table that reads it and what "
                       f"follows it; retrying in {delay:.0f}s")
            waiting = (message, subject, delay)
            # What comes before it in dependency order cannot read it: applied now (the web UI's
            # view need not wait for the score job's first score). Not when the plan tears
            # something down: a DROP must never wait for its rebuild.
            if any(s.action in {"terminate", "drop"} for s in plan.steps):
                at = 0
            for later in plan.steps[at:]:
                _mark_pending(records, later)
            plan = dataclasses.replace(plan, steps=plan.steps[:at])
        for name in plan.removed:
            records.pop(name, None)

        # Prove before destroying: every statement this round would build after a TERMINATE/DROP goes
        # through ksqlDB's EXPLAIN first; one refusal stops the round before anything changed.
        unproven: list[str] = []
        for proof in planner.proofs(plan, live, records):
            if proof.sql is None:
                unproven.append(f"{proof.step.name} ({proof.why_not})")
                continue
            try:
                rt.client.explain(proof.sql, proof.step.properties)
            except Unavailable as exc:
                raise unavailable(exc, f"EXPLAIN {proof.step.name}") from None
            except StatementFailed as exc:
                message = _fail_message(cm, proof.step, exc, proving=True)
                _mark_failed(records, proof.step)
                result.event("Warning", "StatementFailed", message)
                result.executed = executed
                _state_annotations(topology, records, message, False, result)
                raise Fail(message, result) from None
            except RequestRejected as exc:
                message = f"ConfigMap {cm.ref}: ksqlDB rejected the EXPLAIN request for {proof.step.name}: {exc}"
                result.event("Warning", "KsqlRejected", message)
                _state_annotations(topology, records, message, False, result)
                raise Fail(message, result) from None
        if unproven:
            result.event("Normal", "Note", "recreated without an EXPLAIN proof: " + "; ".join(unproven))

        fallback = None
        for n, step in enumerate(plan.steps):
            try:
                outcome = rt.client.execute(step.sql, step.properties if step.builds else None)
            except Unavailable as exc:
                for later in plan.steps[n:]:
                    _mark_pending(records, later)
                raise unavailable(exc, f"{step.action} {step.name}") from None
            except StatementFailed as exc:
                if step.action == "replace" and any(m in str(exc) for m in UPGRADE_REFUSED):
                    log.info("%s: in-place upgrade of %s refused (%s); recreating", cm.ref, step.name, exc)
                    force.add(step.name)
                    fallback = step.name
                    break
                message = _fail_message(cm, step, exc)
                _mark_failed(records, step)
                for later in plan.steps[n + 1:]:
                    _mark_pending(records, later)
                result.event("Warning", "StatementFailed", message)
                result.executed = executed
                _state_annotations(topology, records, message, False, result)
                raise Fail(message, result) from None
            except RequestRejected as exc:
                message = f"ConfigMap {cm.ref}: ksqlDB rejected the request for {step.name}: {exc}"
                result.event("Warning", "KsqlRejected", message)
                _state_annotations(topology, records, message, False, result)
                raise Fail(message, result) from None
            executed.append(step)
            _mark_done(records, step, outcome.status)
        if fallback is None:
            break
    else:  # pragma: no cover - every round forces one more object; bounded by the object count
        message = f"ConfigMap {cm.ref}: gave up after {MAX_FALLBACK_ROUNDS} re-plans"
        raise Fail(message, result)

    result.executed = executed
    if waiting is not None:
        message, subject, delay = waiting
        result.event("Normal", "WaitingForSchema", message)
        if executed:
            result.event("Normal", "Applied", f"applied {len(executed)} statement(s) that do not wait for {subject}")
        _state_annotations(topology, records, f"waiting for subject {subject}", False, result)
        raise Retry(message, result, delay)
    _state_annotations(topology, records, None, True, result)
    counts: dict[str, int] = {}
    for step in executed:
        if step.builds:
            counts[_past(step.action)] = counts.get(_past(step.action), 0) + 1
    counts["unchanged"] = sum(1 for r in records.values() if r.outcome == "unchanged")
    detail = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    changed_content = cm.annotations.get(state.APPLIED_HASH) != topology.content_hash
    if executed:
        repaired = [s.name for s in executed if s.builds and ("drift" in s.reason or "not running" in s.reason)]
        result.summary = f"applied {len(executed)} statement(s): {detail}"
        result.event("Normal", "Applied", f"{result.summary} (content {topology.content_hash[:12]}, {reason})")
        if repaired:
            result.event("Warning", "DriftRepaired", "re-created on the server: " + ", ".join(repaired))
    elif changed_content:
        result.summary = f"content changed, no statement did: nothing to apply ({detail})"
        result.event("Normal", "Unchanged", result.summary)
    else:
        result.summary = "nothing to apply"
    return result


def _past(action: str) -> str:
    return {"create": "created", "replace": "replaced", "recreate": "recreated"}.get(action, action)


def _mark_done(records: dict[str, Record], step: Step, status: str) -> None:
    src = step.source
    if step.action in {"terminate", "drop"}:
        old = records.get(step.name)
        if step.action == "drop" and old is not None:
            records[step.name] = Record(step.name, old.ref, "", "pending")
        return
    assert src is not None
    outcome = "exists" if status == "WARNING" else _past(step.action)
    records[step.name] = Record(step.name, src.ref, planner.short(src.digest), outcome)


def _mark_failed(records: dict[str, Record], step: Step) -> None:
    old = records.get(step.name)
    ref = step.source.ref if step.source else (old.ref if old else "")
    records[step.name] = Record(step.name, ref, old.digest if old else "", "failed")


def _mark_pending(records: dict[str, Record], step: Step) -> None:
    if step.source is None:
        return
    old = records.get(step.name)
    records[step.name] = Record(step.name, step.source.ref, old.digest if old else "", "pending")


# ---- delete --------------------------------------------------------------------------------------------


def delete(cm: ConfigMapView, rt: Runtime, *, retry: int = 0) -> Result:
    """The ConfigMap is being deleted. Policy ``keep``: leave ksqlDB alone. Policy ``drop``: TERMINATE
    and DROP every object it declared (dependants first; topics are never deleted)."""
    result = Result()
    records, _ = state.decode(cm.annotations)
    if state.deletion_policy(cm.annotations) != "drop":
        result.summary = f"kept {len(records)} object(s) (deletion policy keep)"
        result.event("Normal", "Kept", result.summary)
        return result
    try:
        order = [s.name for s in planner.dependency_order(statements.load(cm.data))]
    except (statements.StatementError, planner.PlanError):
        order = []
    # Teardown order: reverse declaration order (dependants first), then anything only recorded.
    names = [n for n in reversed(order) if n in records] + [n for n in reversed(list(records)) if n not in order]
    try:
        live = rt.client.catalog()
    except Unavailable as exc:
        delay = rt.settings.backoff_delay(retry, exc.retry_after)
        message = f"ConfigMap {cm.ref}: cannot drop its objects yet: {exc} (retrying in {delay:.0f}s)"
        result.event("Warning", "KsqlUnavailable", message)
        raise Retry(message, result, delay) from None
    steps = planner.teardown(names, live, "ConfigMap deleted (deletion policy drop)")
    for step in steps:
        try:
            rt.client.execute(step.sql)
        except Unavailable as exc:
            delay = rt.settings.backoff_delay(retry, exc.retry_after)
            message = f"ConfigMap {cm.ref}: {step.action} {step.name}: {exc} (retrying in {delay:.0f}s)"
            result.event("Warning", "KsqlUnavailable", message)
            raise Retry(message, result, delay) from None
        except KsqlError as exc:
            message = _fail_message(cm, step, exc)
            result.event("Warning", "DropFailed", message)
            raise Fail(message, result) from None
        result.executed.append(step)
    dropped = [s.name for s in steps if s.action == "drop"]
    result.summary = f"dropped {len(dropped)} object(s): {', '.join(dropped) or '-'} (topics kept)"
    result.event("Normal", "Dropped", result.summary)
    return result


# ---- drift -------------------------------------------------------------------------------------------


def drift(cm: ConfigMapView, live: Catalog) -> list[str]:
    """What the live server lacks of a fully applied ConfigMap (empty: no drift, or not applied yet -
    a pending change is the apply handler's business, not the drift check's)."""
    records, error = state.decode(cm.annotations)
    try:
        topology = statements.load(cm.data)
    except statements.StatementError:
        return []
    if error or cm.annotations.get(state.APPLIED_HASH) != topology.content_hash:
        return []
    try:
        plan = planner.plan(topology, records, live)
    except planner.PlanError:
        return []
    return [f"{s.name}: {s.reason}" for s in plan.steps if s.builds]
