"""The planner: which changes trigger which statements, in which order."""

from __future__ import annotations

import pytest

from operators.ksql import planner, statements
from operators.ksql.client import Catalog, LiveQuery, LiveSource
from operators.ksql.planner import PlanError, Record, plan

BASE = {
    "010-src.sql": (
        "CREATE STREAM IF NOT EXISTS SRC (k STRING KEY, v INT) WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON');\n"
        "CREATE STREAM IF NOT EXISTS OTHER (k STRING KEY, w INT) WITH (KAFKA_TOPIC='other', VALUE_FORMAT='JSON');"
    ),
    "020-derived.sql": (
        "SET 'auto.offset.reset' = 'latest';\n"
        "CREATE OR REPLACE STREAM FILTERED AS SELECT k, v FROM SRC WHERE v > 0;\n"
        "CREATE TABLE IF NOT EXISTS COUNTS AS SELECT k, COUNT(*) AS n FROM FILTERED GROUP BY k;\n"
        "CREATE TABLE IF NOT EXISTS JOINED AS SELECT c.k AS k, c.n AS n FROM COUNTS c LEFT JOIN T2 t ON c.k = t.k;\n"
        "CREATE TABLE IF NOT EXISTS T2 AS SELECT k, COUNT(*) AS m FROM OTHER GROUP BY k;"
    ),
    "030-reader.sql": (
        "CREATE STREAM IF NOT EXISTS COUNTS_CHANGES (k STRING KEY, n BIGINT) "
        "WITH (KAFKA_TOPIC='COUNTS', VALUE_FORMAT='JSON');"
    ),
}


def topo(**changes: str) -> statements.Topology:
    files = dict(BASE)
    for key, (old, new) in changes.items():
        name = key.replace("_", "-") + ".sql"
        assert old in files[name]
        files[name] = files[name].replace(old, new)
    return statements.load(files)


def applied(t: statements.Topology) -> dict[str, Record]:
    return {s.name: Record(s.name, s.ref, planner.short(s.digest), "created") for s in t.sources}


def live_of(t: statements.Topology, *, without_queries: tuple[str, ...] = ()) -> Catalog:
    sources = {s.name: LiveSource(s.name, s.kind, s.topic) for s in t.sources}
    queries = tuple(LiveQuery(f"Q_{s.name}", (s.name,), "RUNNING") for s in t.sources
                    if s.query and s.name not in without_queries)
    return Catalog(sources, queries)


def summary(p: planner.Plan) -> list[tuple[str, str]]:
    return [(s.action, s.name) for s in p.steps]


def test_dependency_order_is_file_order_where_possible_and_fixes_the_rest():
    t = statements.load(BASE)
    names = [s.name for s in planner.dependency_order(t)]
    # T2 is declared after JOINED, which reads it: it moves in front of JOINED, the rest keep file order
    assert names == ["SRC", "OTHER", "FILTERED", "COUNTS", "T2", "JOINED", "COUNTS_CHANGES"]
    # COUNTS_CHANGES reads COUNTS' topic: it comes after COUNTS even if declared first
    files = {"000-first.sql": BASE["030-reader.sql"], **{k: v for k, v in BASE.items() if k != "030-reader.sql"}}
    names = [s.name for s in planner.dependency_order(statements.load(files))]
    assert names.index("COUNTS_CHANGES") > names.index("COUNTS")


def test_cycles_are_refused():
    t = statements.load({"a.sql": "CREATE STREAM A AS SELECT * FROM B; CREATE STREAM B AS SELECT * FROM A;"})
    with pytest.raises(PlanError, match="cycle: A -> B -> A"):
        planner.dependency_order(t)


def test_first_apply_creates_everything_in_dependency_order_with_properties():
    t = statements.load(BASE)
    p = plan(t, {}, Catalog())
    assert summary(p) == [("create", n) for n in
                          ["SRC", "OTHER", "FILTERED", "COUNTS", "T2", "JOINED", "COUNTS_CHANGES"]]
    by = {s.name: s for s in p.steps}
    assert by["SRC"].properties == {"auto.offset.reset": "earliest"}
    assert by["COUNTS"].properties == {"auto.offset.reset": "latest"}, "SET in the file wins over the default"
    assert by["FILTERED"].sql.startswith("CREATE OR REPLACE STREAM FILTERED") and by["FILTERED"].sql.endswith(";")


def test_unchanged_content_plans_nothing_even_when_reformatted():
    t = statements.load(BASE)
    reformatted = statements.load({k: "-- reformatted\n" + v.replace(" AS SELECT", "\n   AS   SELECT")
                                   for k, v in BASE.items()})
    assert reformatted.content_hash != t.content_hash
    p = plan(reformatted, applied(t), live_of(t))
    assert p.empty and sorted(p.unchanged) == sorted(s.name for s in t.sources)


def test_stateless_change_is_an_in_place_replace_without_touching_dependants():
    new = topo(**{"020_derived": ("WHERE v > 0", "WHERE v > 10")})
    p = plan(new, applied(statements.load(BASE)), live_of(statements.load(BASE)))
    assert summary(p) == [("replace", "FILTERED")]
    assert p.steps[0].sql.startswith("CREATE OR REPLACE STREAM FILTERED")


def test_if_not_exists_statement_changed_in_place_is_rewritten_as_or_replace():
    new = topo(**{"010_src": ("v INT)", "v INT, extra STRING)")})
    p = plan(new, applied(statements.load(BASE)), live_of(statements.load(BASE)))
    assert summary(p) == [("replace", "SRC")]
    assert p.steps[0].sql.startswith("CREATE OR REPLACE STREAM SRC (k STRING KEY, v INT, extra STRING)")
    assert "IF NOT EXISTS" not in p.steps[0].sql


def test_aggregation_change_recreates_it_and_its_dependants_in_order():
    old = statements.load(BASE)
    new = topo(**{"020_derived": ("COUNT(*) AS n FROM FILTERED", "COUNT(v) AS n FROM FILTERED")})
    p = plan(new, applied(old), live_of(old))
    assert summary(p) == [
        # teardown: dependants first, each query terminated before its DROP
        ("terminate", "JOINED"), ("drop", "JOINED"),
        ("terminate", "COUNTS"), ("drop", "COUNTS"),
        # then build in dependency order
        ("recreate", "COUNTS"), ("recreate", "JOINED"),
    ]
    assert p.steps[1].sql == "DROP TABLE IF EXISTS JOINED;" and p.steps[0].sql == "TERMINATE Q_JOINED;"
    assert "DELETE TOPIC" not in " ".join(s.sql for s in p.steps)
    reasons = {s.name: s.reason for s in p.steps if s.builds}
    assert "cannot be upgraded in place" in reasons["COUNTS"] and "reads COUNTS" in reasons["JOINED"]
    # COUNTS_CHANGES only reads COUNTS' topic: ksqlDB does not require dropping it
    assert "COUNTS_CHANGES" in p.unchanged


def test_join_change_recreates():
    old = statements.load(BASE)
    new = topo(**{"020_derived": ("c.n AS n FROM", "c.n AS n, t.m AS m FROM")})
    assert summary(plan(new, applied(old), live_of(old))) == [
        ("terminate", "JOINED"), ("drop", "JOINED"), ("recreate", "JOINED")]


def test_new_statement_is_created_after_its_dependencies():
    old = statements.load(BASE)
    files = dict(BASE)
    files["025-more.sql"] = "CREATE STREAM IF NOT EXISTS MORE AS SELECT k FROM FILTERED;"
    p = plan(statements.load(files), applied(old), live_of(old))
    assert summary(p) == [("create", "MORE")]
    assert p.steps[0].reason == "new"


def test_drift_missing_object_and_terminated_query_are_repaired():
    t = statements.load(BASE)
    live = live_of(t, without_queries=("COUNTS",))
    sources = dict(live.sources)
    del sources["T2"]
    live = Catalog(sources, tuple(q for q in live.queries if q.sinks != ("T2",)))
    p = plan(t, applied(t), live)
    assert summary(p) == [
        ("terminate", "JOINED"), ("drop", "JOINED"), ("drop", "COUNTS"),  # COUNTS has no query to terminate
        ("recreate", "COUNTS"), ("create", "T2"), ("recreate", "JOINED"),
    ]
    reasons = {s.name: s.reason for s in p.steps if s.builds}
    assert "not running" in reasons["COUNTS"] and "drift" in reasons["T2"]


def test_objects_found_on_the_server_without_state_are_adopted_not_recreated():
    t = statements.load(BASE)
    p = plan(t, {}, live_of(t))
    assert summary(p) == [("replace", "FILTERED")], "only CREATE OR REPLACE statements run again"
    assert sorted(p.adopted) == sorted(s.name for s in t.sources if s.name != "FILTERED")


def test_kind_change_recreates():
    t = statements.load(BASE)
    live = live_of(t)
    sources = dict(live.sources)
    sources["T2"] = LiveSource("T2", "STREAM", "T2")
    p = plan(t, applied(t), Catalog(sources, live.queries))
    assert ("recreate", "T2") in summary(p) and ("recreate", "JOINED") in summary(p)


def test_forced_recreate_after_a_refused_in_place_upgrade():
    t = statements.load(BASE)
    p = plan(t, applied(t), live_of(t), force_recreate={"FILTERED"})
    assert summary(p)[-3:] == [("recreate", "FILTERED"), ("recreate", "COUNTS"), ("recreate", "JOINED")]
    assert summary(p)[:6] == [("terminate", "JOINED"), ("drop", "JOINED"), ("terminate", "COUNTS"),
                              ("drop", "COUNTS"), ("terminate", "FILTERED"), ("drop", "FILTERED")]


def test_removed_statement_is_kept_by_default_and_dropped_with_policy_drop():
    old = statements.load(BASE)
    files = dict(BASE)
    files["030-reader.sql"] = ""
    new = statements.load(files)
    keep = plan(new, applied(old), live_of(old))
    assert keep.empty and keep.removed == ["COUNTS_CHANGES"]
    assert any("kept" in n and "COUNTS_CHANGES" in n for n in keep.notes)
    drop = plan(new, applied(old), live_of(old), drop_removed=True)
    assert summary(drop) == [("drop", "COUNTS_CHANGES")]
    assert drop.steps[0].sql == "DROP STREAM IF EXISTS COUNTS_CHANGES;"


def test_removed_object_still_read_by_a_declared_one_is_kept_even_with_drop():
    old = statements.load(BASE)
    files = dict(BASE)
    files["010-src.sql"] = BASE["010-src.sql"].split("\n")[0]  # OTHER removed, T2 still reads it
    p = plan(statements.load(files), applied(old), live_of(old), drop_removed=True)
    assert p.empty and any("OTHER" in n and "kept" in n for n in p.notes)


def test_failed_change_is_retried_and_unknown_sources_are_noted():
    old = statements.load(BASE)
    new = topo(**{"020_derived": ("WHERE v > 0", "WHERE v > 1")})
    records = applied(old)
    records["FILTERED"] = Record("FILTERED", "020-derived.sql#2", records["FILTERED"].digest, "failed")
    assert summary(plan(new, records, live_of(old))) == [("replace", "FILTERED")]
    lonely = statements.load({"a.sql": "CREATE STREAM X AS SELECT * FROM NOWHERE;"})
    assert any("NOWHERE" in n for n in plan(lonely, {}, Catalog()).notes)


def test_queries_in_error_state_are_noted():
    t = statements.load(BASE)
    live = live_of(t)
    queries = tuple(LiveQuery(q.id, q.sinks, "ERROR" if q.sinks == ("COUNTS",) else "RUNNING") for q in live.queries)
    p = plan(t, applied(t), Catalog(live.sources, queries))
    assert p.empty and any("Q_COUNTS is ERROR" in n for n in p.notes)


def test_describe_lists_steps_sql_and_notes():
    t = statements.load(BASE)
    text = planner.describe(plan(t, {}, Catalog()))
    assert "1. CREATE    SRC (010-src.sql#1, line 1): new" in text
    assert "CREATE OR REPLACE STREAM FILTERED" in text and "'auto.offset.reset'='latest'" in text
    assert planner.describe(plan(t, applied(t), live_of(t))).startswith("nothing to apply")
