"""Decide what to send to ksqlDB: desired statements x what was applied before x what the server has.

Per declared object, in dependency order:

============================  ==================================================================
situation                     step
============================  ==================================================================
not on the server             ``create`` (the statement as written)
on the server, never applied  adopt it (no step; recorded as ``exists``) - or ``replace`` when the
by us                         statement says ``CREATE OR REPLACE``
unchanged digest              nothing
changed, upgradable in place  ``replace``: the statement rewritten as ``CREATE OR REPLACE``
changed, not upgradable       ``recreate``: TERMINATE its query, DROP (never ``DELETE TOPIC``),
(join, aggregation, window,   CREATE again with ``auto.offset.reset=earliest`` (backfill)
SOURCE)
its query is not running      ``recreate`` (someone terminated it)
declared kind differs         ``recreate``
============================  ==================================================================

Recreating an object recreates every declared object that reads from it too: ksqlDB refuses to drop
a stream or table while streams/tables created from it exist. Teardown runs dependants first, the
creates run in dependency order. Objects that were applied before and are no longer declared are
dropped only when the ConfigMap's deletion policy is ``drop``; otherwise they are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from operators.ksql.client import Catalog
from operators.ksql.statements import Source, Topology, quote_name

DIGEST_CHARS = 16
DEFAULT_PROPERTIES: Mapping[str, str] = {"auto.offset.reset": "earliest"}
OK_OUTCOMES = frozenset({"created", "replaced", "recreated", "exists", "unchanged"})


class PlanError(ValueError):
    pass


@dataclass(frozen=True)
class Record:
    """What the operator knows about one declared object (stored, compactly, in an annotation)."""

    name: str
    ref: str  # file#statement-number of its declaration
    digest: str  # DIGEST_CHARS of the statement digest of the definition on the server ("" if none)
    outcome: str  # created | replaced | recreated | exists | unchanged | failed | pending


@dataclass(frozen=True)
class Step:
    action: str  # terminate | drop | create | replace | recreate
    name: str
    sql: str
    reason: str
    properties: Mapping[str, str] = field(default_factory=dict)
    source: Source | None = None
    query_id: str | None = None

    @property
    def builds(self) -> bool:
        return self.action in {"create", "replace", "recreate"}


@dataclass
class Plan:
    steps: list[Step]
    unchanged: list[str]
    adopted: list[str]
    removed: list[str]  # no longer declared (dropped when the policy is drop, else kept)
    notes: list[str]

    @property
    def empty(self) -> bool:
        return not self.steps


def short(digest: str) -> str:
    return digest[:DIGEST_CHARS]


def dependency_order(topology: Topology) -> list[Source]:
    """Declared sources ordered so that everything a source reads comes first (stable: file order
    wherever the files already respect the dependencies). A source reading a topic that a declared
    query writes depends on that query's object too."""
    sources = list(topology.sources)
    by_name = {s.name: s for s in sources}
    writers_of_topic = {s.topic: s.name for s in sources if s.query}
    deps: dict[str, set[str]] = {}
    for s in sources:
        d = {r for r in s.reads if r in by_name and r != s.name}
        if not s.query and s.topic in writers_of_topic and writers_of_topic[s.topic] != s.name:
            d.add(writers_of_topic[s.topic])
        deps[s.name] = d
    ordered: list[Source] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = visiting[visiting.index(name):] + [name]
            raise PlanError("dependency cycle: " + " -> ".join(cycle))
        visiting.append(name)
        for dep in sorted(deps[name], key=lambda n: sources.index(by_name[n])):
            visit(dep)
        visiting.pop()
        done.add(name)
        ordered.append(by_name[name])

    for s in sources:
        visit(s.name)
    return ordered


def dependants(order: list[Source], names: Iterable[str]) -> set[str]:
    """``names`` plus every declared source that reads (transitively) from one of them."""
    closure = set(names)
    for s in order:  # topological: one pass reaches the fixpoint
        if any(r in closure for r in s.reads):
            closure.add(s.name)
    return closure


def _drop_sql(kind: str, name: str) -> str:
    # Never DELETE TOPIC: source topics belong to the producers, sink topics to their consumers.
    return f"DROP {kind} IF EXISTS {quote_name(name)};"


def teardown(names: Iterable[str], live: Catalog, reason: str) -> list[Step]:
    """TERMINATE the queries writing each object, then DROP it; ``names`` in teardown order."""
    steps: list[Step] = []
    terminated: set[str] = set()
    for name in names:
        src = live.sources.get(name)
        if src is None:
            continue
        for q in live.writers(name):
            if q.id not in terminated:
                terminated.add(q.id)
                steps.append(Step("terminate", name, f"TERMINATE {q.id};", reason, query_id=q.id))
        steps.append(Step("drop", name, _drop_sql(src.kind, name), reason))
    return steps


def plan(
    topology: Topology,
    records: Mapping[str, Record],
    live: Catalog,
    *,
    drop_removed: bool = False,
    force_recreate: Iterable[str] = (),
    default_properties: Mapping[str, str] = DEFAULT_PROPERTIES,
) -> Plan:
    order = dependency_order(topology)
    declared = {s.name for s in order}
    force = set(force_recreate)
    notes: list[str] = []
    actions: dict[str, tuple[str, str]] = {}  # name -> (action, reason)
    unchanged: list[str] = []
    adopted: list[str] = []

    for s in order:
        for r in s.reads:
            if r not in declared and not live.has(r):
                notes.append(f"{s.name} ({s.ref}) reads {r}, which neither this ConfigMap nor the server has")
        rec = records.get(s.name)
        here = live.sources.get(s.name)
        if here is None:
            if rec is None:
                reason = "new"
            elif rec.outcome in OK_OUTCOMES and rec.digest:
                reason = "missing on the server (drift)"
            else:
                reason = f"not applied yet (last outcome: {rec.outcome})"
            actions[s.name] = ("create", reason)
        elif s.name in force:
            actions[s.name] = ("recreate", "ksqlDB refused the in-place upgrade")
        elif here.kind != s.kind:
            actions[s.name] = ("recreate", f"is a {here.kind} on the server, declared as a {s.kind}")
        elif s.query and not live.writers(s.name):
            actions[s.name] = ("recreate", "its persistent query is not running (terminated outside the operator)")
        elif rec is None or not rec.digest:
            if s.or_replace:
                actions[s.name] = ("replace", "existed before this ConfigMap declared it; CREATE OR REPLACE")
            else:
                adopted.append(s.name)
        elif rec.digest == short(s.digest):
            unchanged.append(s.name)
        elif s.upgradable_in_place:
            actions[s.name] = ("replace", "definition changed; upgraded in place")
        else:
            why = "a SOURCE object" if s.is_source else "a join/aggregation/windowed query"
            actions[s.name] = ("recreate", f"definition changed; {why} cannot be upgraded in place")
        for q in live.writers(s.name) if here is not None else []:
            if q.state and q.state.upper() not in {"RUNNING", "PENDING_SHUTDOWN", "UNRESPONSIVE"}:
                notes.append(f"{s.name}: query {q.id} is {q.state}")

    # Recreating an object means dropping every declared object created from it first.
    recreate = {n for n, (a, _) in actions.items() if a == "recreate"}
    closure = dependants(order, recreate)
    for s in order:
        if s.name in closure and s.name not in recreate and live.has(s.name):
            upstream = next(r for r in s.reads if r in closure)
            actions[s.name] = ("recreate", f"reads {upstream}, which is recreated")
            recreate.add(s.name)
            if s.name in unchanged:
                unchanged.remove(s.name)
            if s.name in adopted:
                adopted.remove(s.name)

    steps: list[Step] = []
    removed = [name for name in records if name not in declared]
    if removed:
        if drop_removed:
            keep = {name for name in removed if any(name in s.reads for s in order)}
            for name in sorted(keep):
                notes.append(f"{name} is no longer declared but declared objects read it: kept")
            gone = [n for n in reversed(list(records)) if n in removed and n not in keep]
            steps += teardown(gone, live, "no longer declared (deletion policy drop)")
        else:
            notes.append("no longer declared, kept (deletion policy keep): " + ", ".join(removed))

    steps += teardown([s.name for s in reversed(order) if s.name in recreate], live, "recreate")
    for s in order:
        if s.name not in actions:
            continue
        action, reason = actions[s.name]
        sql = s.replace_sql() if action == "replace" else s.create_sql()
        props = {**default_properties, **s.properties}
        steps.append(Step(action, s.name, sql, reason, props, s))
    return Plan(steps, unchanged, adopted, removed, notes)


@dataclass(frozen=True)
class Proof:
    """One statement to prove acceptable (``EXPLAIN``) before the plan's first TERMINATE/DROP."""

    step: Step
    sql: str | None  # what to EXPLAIN; None: ksqlDB cannot prove this statement in advance
    why_not: str = ""


def proofs(plan_: Plan, live: Catalog, records: Mapping[str, Record]) -> list[Proof]:
    """What must be proven before anything is torn down: every statement the plan builds once it
    has dropped something (a rejected CREATE after a DROP would leave the object, and everything
    built on it, missing). Empty when the plan terminates and drops nothing.

    EXPLAIN runs only queries (``AS SELECT``), against the live server: a statement reading an object
    this plan creates cannot be proven, and neither can one edited together with an object it reads
    (the sandbox knows only the old definition of what it reads: it could refuse a column the edit
    adds). A statement recreated only because what it reads is recreated is proven against the live
    definition of what it reads."""
    if not any(s.action in {"terminate", "drop"} for s in plan_.steps):
        return []
    builds = [s for s in plan_.steps if s.builds and s.source is not None]
    changing = {s.name for s in builds if s.source is not None and (
        not live.has(s.name) or (rec := records.get(s.name)) is None or rec.digest != short(s.source.digest))}
    out: list[Proof] = []
    for step in builds:
        src = step.source
        assert src is not None
        missing = next((r for r in src.reads if not live.has(r)), None)
        edited_with = next((r for r in src.reads if r in changing), None) if step.name in changing else None
        if not src.query:
            out.append(Proof(step, None, "not a query (EXPLAIN runs only AS SELECT)"))
        elif missing:
            out.append(Proof(step, None, f"reads {missing}, which is not on the server yet"))
        elif edited_with:
            out.append(Proof(step, None, f"edited together with {edited_with}, which it reads"))
        else:
            out.append(Proof(step, src.probe_sql()))
    return out


def describe(plan_: Plan, *, with_sql: bool = True) -> str:
    """Human-readable plan (the CLI's output)."""
    lines: list[str] = []
    for n, step in enumerate(plan_.steps, 1):
        where = f" ({step.source.ref}, line {step.source.line})" if step.source else ""
        lines.append(f"{n:>3}. {step.action.upper():<9} {step.name}{where}: {step.reason}")
        if with_sql:
            if step.properties:
                props = ", ".join(f"'{k}'='{v}'" for k, v in sorted(step.properties.items()))
                lines.append(f"       -- streamsProperties: {props}")
            lines += ["       " + line for line in step.sql.splitlines()]
    if not plan_.steps:
        lines.append("nothing to apply")
    if plan_.unchanged:
        lines.append("unchanged: " + ", ".join(plan_.unchanged))
    if plan_.adopted:
        lines.append("already on the server (adopted as declared): " + ", ".join(plan_.adopted))
    lines += [f"note: {note}" for note in plan_.notes]
    return "\n".join(lines)
