"""Issue 14's metric renames in ksql/ (the activation counts take gold's names and meaning, the profile's
update time gold's ``profile_updated_at``) reach a server that runs the previous files as a targeted
replace: the two changed queries are terminated, dropped and created again from ``earliest``; nothing
else is touched and no topic is deleted (ksqlDB test double over real HTTP, the operator's own code)."""

from __future__ import annotations

from pathlib import Path

from operators.ksql import planner, statements
from schemas import topics
from tests.engines.test_operator_reconcile import ConfigMap, ksqldb, runtime, statements_sent  # noqa: F401

KSQL_DIR = Path(__file__).resolve().parents[2] / "ksql"
FILES = {p.name: p.read_text() for p in sorted(KSQL_DIR.glob("*.sql"))}

# The statements as the previous release declared them (before the renames).
PREVIOUS = {
    "040-activations.sql": [
        ("SUM(CASE WHEN `status` = 'delivered' THEN 1 ELSE 0 END)                      AS `activations_delivered`",
         "SUM(CASE WHEN `status` = 'delivered' THEN 1 ELSE 0 END) AS `delivered_count`"),
        ("SUM(CASE WHEN `status` = 'failed' OR `status` = 'bounced' THEN 1 ELSE 0 END) AS `activations_failed`",
         "SUM(CASE WHEN `status` = 'failed' THEN 1 ELSE 0 END)    AS `failed_count`"),
        ("SUM(CASE WHEN `status` = 'bounced' THEN 1 ELSE 0 END)                        AS `activations_bounced`",
         "SUM(CASE WHEN `status` = 'bounced' THEN 1 ELSE 0 END)   AS `bounced_count`"),
    ],
    "050-consolidated.sql": [
        ("AS `profile_updated_at`", "AS `updated_at`"),
        ("COALESCE(a.`activations_delivered`, 0)          AS `activations_delivered`",
         "COALESCE(a.`delivered_count`, 0)                AS `delivered_count`"),
        ("COALESCE(a.`activations_failed`, 0)             AS `activations_failed`",
         "COALESCE(a.`failed_count`, 0)                   AS `failed_count`"),
        ("COALESCE(a.`activations_bounced`, 0)            AS `activations_bounced`",
         "COALESCE(a.`bounced_count`, 0)                  AS `bounced_count`"),
    ],
}


def previous_files() -> dict[str, str]:
    files = dict(FILES)
    for name, pairs in PREVIOUS.items():
        for new, old in pairs:
            assert new in files[name], f"{name} no longer contains {new!r}: update PREVIOUS"
            files[name] = files[name].replace(new, old)
    return files


def test_the_renamed_columns_are_gone_from_the_topology():
    text = "\n".join(FILES.values())
    for old in ("delivered_count", "failed_count", "bounced_count"):
        assert old not in text
    assert "AS `updated_at`" not in FILES["050-consolidated.sql"]


def test_the_renames_are_planned_as_a_replace_of_the_two_changed_queries_only():
    old = statements.load(previous_files())
    new = statements.load(FILES)
    records = {s.name: planner.Record(s.name, s.ref, planner.short(s.digest), "created") for s in old.sources}
    from operators.ksql.client import Catalog, LiveQuery, LiveSource

    live = Catalog({s.name: LiveSource(s.name, s.kind, s.topic) for s in old.sources},
                   tuple(LiveQuery(f"Q_{s.name}", (s.name,), "RUNNING") for s in old.sources if s.query))
    plan = planner.plan(new, records, live)
    assert [(s.action, s.name) for s in plan.steps] == [
        ("terminate", "T_CUSTOMER_CONSOLIDATED"), ("drop", "T_CUSTOMER_CONSOLIDATED"),
        ("terminate", "T_ACTIVATION_SUMMARY"), ("drop", "T_ACTIVATION_SUMMARY"),
        ("recreate", "T_ACTIVATION_SUMMARY"), ("recreate", "T_CUSTOMER_CONSOLIDATED"),
    ]
    assert all(s.properties.get("auto.offset.reset") == "earliest" for s in plan.steps if s.builds)
    assert len(plan.unchanged) == len(new.sources) - 2


def test_a_server_running_the_previous_files_gets_the_renames_without_a_reset(ksqldb):  # noqa: F811
    rt = runtime(ksqldb)
    cm = ConfigMap(previous_files())
    cm.apply(rt)
    old_ids = {q.sink: q.id for q in ksqldb.queries.values()}
    assert "delivered_count" in ksqldb.sources["T_ACTIVATION_SUMMARY"].create.columns
    cm.data = dict(FILES)
    before = len(ksqldb.ksql_requests())
    cm.apply(rt)
    sent = [s for s in statements_sent(ksqldb, before) if not s.startswith("EXPLAIN")]
    heads = [" ".join(s.split()[:2]) for s in sent]
    assert heads == [f"TERMINATE {old_ids['T_CUSTOMER_CONSOLIDATED']};", "DROP TABLE",
                     f"TERMINATE {old_ids['T_ACTIVATION_SUMMARY']};", "DROP TABLE", "CREATE TABLE", "CREATE TABLE"]
    assert ksqldb.deleted_topics == [] and topics.CUSTOMER_CONSOLIDATED.name in ksqldb.topics
    untouched = {name: qid for name, qid in old_ids.items()
                 if name not in {"T_CUSTOMER_CONSOLIDATED", "T_ACTIVATION_SUMMARY"}}
    assert all(qid in ksqldb.queries for qid in untouched.values()), "every other query keeps running"
    columns = ksqldb.sources["T_CUSTOMER_CONSOLIDATED"].create.columns
    assert {"activations_delivered", "activations_failed", "activations_bounced", "profile_updated_at"} <= set(columns)
    outcomes = cm.outcomes()
    assert outcomes["T_ACTIVATION_SUMMARY"] == outcomes["T_CUSTOMER_CONSOLIDATED"] == "recreated"
    assert {n for n, o in outcomes.items() if o == "unchanged"} == set(outcomes) - {
        "T_ACTIVATION_SUMMARY", "T_CUSTOMER_CONSOLIDATED"}
