"""The operator's handler logic (reconcile.apply / delete / drift) against the ksqlDB TEST DOUBLE over
real HTTP, with the real topology in ksql/ (and small synthetic ones for the edge cases)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from operators.ksql import drift, reconcile, segments, state, statements
from operators.ksql.client import KsqlClient
from operators.ksql.reconcile import ConfigMapView, Fail, Retry, Runtime
from operators.ksql.settings import OperatorSettings
from schemas import topics
from tests.support.ksqldb_double import CONTENT_TYPE, KsqlDbDouble
from tests.support.schema_registry_double import SchemaRegistryDouble

KSQL_DIR = Path(__file__).resolve().parents[2] / "ksql"
FILES = {p.name: p.read_text() for p in sorted(KSQL_DIR.glob("*.sql"))}
TOPOLOGY = statements.load(FILES)
NAMES = [s.name for s in TOPOLOGY.sources]
QUERIES = [s.name for s in TOPOLOGY.sources if s.query]


@pytest.fixture
def ksqldb() -> Iterator[KsqlDbDouble]:
    double = KsqlDbDouble({t.name for t in topics.KSQL_INPUT_TOPICS}).start()
    try:
        yield double
    finally:
        double.stop()


def runtime(double: KsqlDbDouble, registry_url: str = "", **env: str) -> Runtime:
    settings = OperatorSettings.from_env({"KSQLDB_URL": double.url, "SCHEMA_REGISTRY_URL": registry_url,
                                          "KSQL_BACKOFF_SECONDS": "5", **env})
    rt = Runtime.build(settings)
    rt.client = KsqlClient(double.url, sleep=lambda s: None)  # status polling without wall-clock waits
    return rt


class ConfigMap:
    """A ConfigMap as the API server would keep it: data + annotations; apply() stores the patch."""

    def __init__(self, files: dict[str, str], annotations: dict[str, str] | None = None):
        self.data = dict(files)
        self.annotations = dict(annotations or {})

    def view(self) -> ConfigMapView:
        return ConfigMapView("marketing-engine", "marketing-engine-ksql", dict(self.data), dict(self.annotations))

    def store(self, result: reconcile.Result) -> reconcile.Result:
        for key, value in result.annotations.items():
            if value is None:
                self.annotations.pop(key, None)
            else:
                self.annotations[key] = value
        return result

    def apply(self, rt: Runtime, **kw) -> reconcile.Result:
        try:
            return self.store(reconcile.apply(self.view(), rt, **kw))
        except reconcile.Outcome as exc:
            self.store(exc.result)
            raise

    @property
    def records(self) -> dict[str, state.Record]:
        return state.decode(self.annotations)[0]

    def outcomes(self) -> dict[str, str]:
        return {name: r.outcome for name, r in self.records.items()}


def statements_sent(double: KsqlDbDouble, since: int = 0) -> list[str]:
    return [r["body"]["ksql"] for r in double.ksql_requests()[since:] if not r["body"]["ksql"].startswith("SHOW")]


def test_first_apply_creates_the_whole_topology_in_order(ksqldb):
    cm = ConfigMap(FILES)
    result = cm.apply(runtime(ksqldb))
    assert sorted(ksqldb.sources) == sorted(NAMES)
    assert sorted(q.sink for q in ksqldb.queries.values()) == sorted(QUERIES)
    assert ksqldb.created == NAMES
    for topic in (topics.ORDER_ENRICHED, topics.CUSTOMER_CONSOLIDATED, topics.SEGMENT_MATERIALIZED):
        assert topic.name in ksqldb.topics
    assert ksqldb.deleted_topics == []
    # one statement per request, documented content type, earliest, sequence numbers passed forward
    reqs = [r for r in ksqldb.ksql_requests() if not r["body"]["ksql"].startswith("SHOW")]
    assert len(reqs) == len(NAMES)
    assert all(r["headers"]["Content-Type"] == CONTENT_TYPE for r in reqs)
    assert all(r["body"]["streamsProperties"].get("auto.offset.reset") == "earliest" for r in reqs)
    seqs = [r["body"].get("commandSequenceNumber") for r in reqs]
    assert seqs[1:] == list(range(1, len(NAMES))), "each request waits for the previous command"
    # annotations: content hash + compact per-statement outcome, never the content
    assert cm.annotations[state.APPLIED_HASH] == TOPOLOGY.content_hash
    assert set(cm.outcomes().values()) == {"created"} and list(cm.records) == NAMES
    assert "SELECT" not in cm.annotations[state.STATE] and len(cm.annotations[state.STATE]) < 2000
    assert [(e.type, e.reason) for e in result.events] == [("Normal", "Applied")]
    assert f"created {len(NAMES)}" in result.events[0].message


def test_unchanged_content_is_not_reapplied(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES)
    cm.apply(rt)
    before = len(ksqldb.ksql_requests())
    result = cm.apply(rt, reason="operator start")
    assert statements_sent(ksqldb, before) == [], "only SHOW requests"
    assert result.events == [] and result.summary == "nothing to apply"
    assert set(cm.outcomes().values()) == {"unchanged"}


def test_reformatting_and_comments_change_the_hash_but_apply_nothing(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES)
    cm.apply(rt)
    before = len(ksqldb.ksql_requests())
    cm.data = {k: "-- reviewed 2026-11-26\n" + v.replace("    ", "  ") for k, v in FILES.items()}
    result = cm.apply(rt)
    assert statements_sent(ksqldb, before) == []
    assert [e.reason for e in result.events] == ["Unchanged"]
    assert cm.annotations[state.APPLIED_HASH] == statements.content_hash(cm.data) != TOPOLOGY.content_hash


def test_segment_threshold_change_is_upgraded_in_place(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES)
    cm.apply(rt)
    query_ids = dict((q.sink, q.id) for q in ksqldb.queries.values())
    rules_yaml = (KSQL_DIR / "segments.yaml").read_text().replace("min_lifetime_value: 1000", "min_lifetime_value: 2500")
    rules = segments.parse_rules(yaml.safe_load(rules_yaml))
    name = next(n for n, t in FILES.items() if segments.generated_block(t) is not None)
    cm.data = {**FILES, name: segments.render(FILES[name], rules)}
    before = len(ksqldb.ksql_requests())
    cm.apply(rt)
    sent = statements_sent(ksqldb, before)
    assert len(sent) == 1 and sent[0].startswith("CREATE OR REPLACE STREAM S_SEGMENT_MATERIALIZED")
    assert "`lifetime_value` >= 2500.0" in ksqldb.sources["S_SEGMENT_MATERIALIZED"].statement
    assert dict((q.sink, q.id) for q in ksqldb.queries.values()) == query_ids, "same query, upgraded in place"
    assert cm.outcomes()["S_SEGMENT_MATERIALIZED"] == "replaced"


def test_aggregation_change_recreates_it_and_its_dependants_with_backfill(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES)
    cm.apply(rt)
    old_ids = {q.sink: q.id for q in ksqldb.queries.values()}
    cm.data = {**FILES, "030-orders.sql": FILES["030-orders.sql"].replace(
        "COUNT(*)           AS `order_count`", "COUNT(*)           AS `order_count`,\n    AVG(`order_total`) AS `avg_order`")}
    before = len(ksqldb.ksql_requests())
    result = cm.apply(rt)
    sent = statements_sent(ksqldb, before)
    # both statements are proven (EXPLAIN, under probe names) before the first TERMINATE
    explained = [s for s in sent if s.startswith("EXPLAIN")]
    assert sent[:2] == explained and len(explained) == 2
    assert "T_ORDER_SUMMARY_EXPLAIN_" in explained[0] and "T_CUSTOMER_CONSOLIDATED_EXPLAIN_" in explained[1]
    assert not any("_EXPLAIN_" in name for name in ksqldb.sources), "a proof creates nothing"
    sent = sent[2:]
    heads = [" ".join(s.split()[:3]) for s in sent]
    assert heads == [
        f"TERMINATE {old_ids['T_CUSTOMER_CONSOLIDATED']};", "DROP TABLE IF",
        f"TERMINATE {old_ids['T_ORDER_SUMMARY']};", "DROP TABLE IF",
        "CREATE TABLE IF", "CREATE TABLE IF",
    ]
    assert "T_CUSTOMER_CONSOLIDATED" in sent[1] and "T_ORDER_SUMMARY" in sent[3]
    assert "T_ORDER_SUMMARY" in sent[4] and "T_CUSTOMER_CONSOLIDATED" in sent[5]
    creates = [r for r in ksqldb.ksql_requests()[before:] if r["body"]["ksql"].startswith("CREATE")]
    assert all(r["body"]["streamsProperties"]["auto.offset.reset"] == "earliest" for r in creates)
    assert sorted(ksqldb.sources) == sorted(NAMES) and ksqldb.deleted_topics == []
    assert topics.CUSTOMER_CONSOLIDATED.name in ksqldb.topics
    assert old_ids["S_SEGMENT_MATERIALIZED"] in ksqldb.queries, "downstream of the topic only: untouched"
    outcomes = cm.outcomes()
    assert outcomes["T_ORDER_SUMMARY"] == outcomes["T_CUSTOMER_CONSOLIDATED"] == "recreated"
    assert outcomes["S_SEGMENT_SOURCE"] == "unchanged"
    assert "recreated 2" in result.events[0].message


def test_refused_in_place_upgrade_falls_back_to_recreate(ksqldb):
    rt = runtime(ksqldb)
    src = ("CREATE STREAM IF NOT EXISTS SRC (`customer_id` STRING KEY, v INT, w INT) "
           "WITH (KAFKA_TOPIC='dom.order.placed.v1', VALUE_FORMAT='JSON');\n")
    cm = ConfigMap({"a.sql": "".join([src, "CREATE OR REPLACE STREAM PICK AS SELECT `customer_id`, v, w FROM SRC;"]),
                    "b.sql": "CREATE STREAM IF NOT EXISTS DOWN AS SELECT * FROM PICK;"})
    cm.apply(rt)
    cm.data["a.sql"] = "".join([src, "CREATE OR REPLACE STREAM PICK AS SELECT `customer_id`, w FROM SRC;"])  # -1 column
    before = len(ksqldb.ksql_requests())
    cm.apply(rt)
    sent = statements_sent(ksqldb, before)
    assert sent[0].startswith("CREATE OR REPLACE STREAM PICK"), "in place first"
    assert [s.split()[0] for s in sent[1:]] == ["EXPLAIN", "EXPLAIN", "TERMINATE", "DROP", "TERMINATE", "DROP",
                                                 "CREATE", "CREATE"]
    assert ksqldb.sources["PICK"].create.columns == ["customer_id", "W"]
    assert cm.outcomes() == {"SRC": "unchanged", "PICK": "recreated", "DOWN": "recreated"}


def test_statement_error_is_permanent_and_names_configmap_file_statement_and_message(ksqldb):
    rt = runtime(ksqldb)
    files = dict(FILES)
    files["030-orders.sql"] = FILES["030-orders.sql"].replace("FROM T_ORDER_BY_ID", "FROM T_ORDERS_BY_ID_TYPO")
    cm = ConfigMap(files)
    with pytest.raises(Fail) as err:
        cm.apply(rt)
    message = str(err.value)
    assert "marketing-engine/marketing-engine-ksql" in message and "030-orders.sql statement 4" in message
    assert "T_ORDER_SUMMARY" in message and "T_ORDERS_BY_ID_TYPO does not exist" in message
    assert [(e.type, e.reason) for e in err.value.result.events][-1] == ("Warning", "StatementFailed")
    outcomes = cm.outcomes()
    assert outcomes["T_ORDER_BY_ID"] == "created" and outcomes["T_ORDER_SUMMARY"] == "failed"
    assert outcomes["T_CUSTOMER_CONSOLIDATED"] == "pending"
    assert state.APPLIED_HASH not in cm.annotations
    assert "does not exist" in state.decode(cm.annotations)[1]
    # fixing the ConfigMap applies the rest, and only the rest
    cm.data = FILES
    before = len(ksqldb.ksql_requests())
    cm.apply(rt)
    sent = statements_sent(ksqldb, before)
    assert len(sent) == NAMES.index("S_SEGMENT_MATERIALIZED") - NAMES.index("T_ORDER_SUMMARY") + 1
    assert sorted(ksqldb.sources) == sorted(NAMES)
    assert cm.annotations[state.APPLIED_HASH] == TOPOLOGY.content_hash


def test_invalid_configmap_is_refused_before_talking_to_ksqldb(ksqldb):
    cm = ConfigMap({**FILES, "090-bad.sql": "INSERT INTO S_ORDER_PLACED SELECT * FROM S_ORDER_PLACED;"})
    with pytest.raises(Fail) as err:
        cm.apply(runtime(ksqldb))
    assert "090-bad.sql statement 1" in str(err.value) and "INSERT INTO is not supported" in str(err.value)
    assert err.value.result.events[0].reason == "InvalidKsql"
    assert ksqldb.requests == []


def test_ksqldb_initializing_is_a_temporary_error_without_statements(ksqldb):
    ksqldb.initializing = True
    cm = ConfigMap(FILES)
    with pytest.raises(Retry) as err:
        cm.apply(runtime(ksqldb), retry=2)
    assert err.value.delay == 20.0, "5s backoff doubled per retry"
    assert ksqldb.ksql_requests() == [] and "not ready" in str(err.value)
    assert err.value.result.events[0].reason == "KsqlUnavailable"


def test_ksqldb_unreachable_is_temporary():
    rt = Runtime.build(OperatorSettings.from_env({"KSQLDB_URL": "http://127.0.0.1:9", "SCHEMA_REGISTRY_URL": ""}))
    with pytest.raises(Retry) as err:
        reconcile.apply(ConfigMap(FILES).view(), rt)
    assert "unreachable" in str(err.value) and err.value.delay == 5.0


def test_50302_mid_apply_is_temporary_honours_retry_after_and_resumes_where_it_stopped(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES)
    # the 4th /ksql request (catalog + two statements passed) meets a server that is (re)initializing
    original = ksqldb.ksql

    def ksql(body, calls=[0]):  # noqa: B006 - a counter local to this test
        calls[0] += 1
        if calls[0] == 4:
            return 503, {"@type": "generic_error", "error_code": 50302, "message": "initializing"}, {"Retry-After": "30"}
        return original(body)

    ksqldb.ksql = ksql
    with pytest.raises(Retry) as err:
        cm.apply(rt)
    assert err.value.delay == 30.0, "Retry-After wins over a shorter backoff"
    outcomes = cm.outcomes()
    assert [outcomes[n] for n in NAMES[:3]] == ["created", "created", "pending"]
    assert set(outcomes[n] for n in NAMES[3:]) == {"pending"}
    assert state.APPLIED_HASH not in cm.annotations
    before = len(ksqldb.ksql_requests())
    cm.apply(rt, retry=1)
    sent = statements_sent(ksqldb, before)
    assert len(sent) == len(NAMES) - 2, "the two created before the outage are not sent again"
    assert sorted(ksqldb.sources) == sorted(NAMES)


def test_non_final_command_status_is_followed_before_the_next_statement(ksqldb):
    ksqldb.queue_next, ksqldb.polls_to_finish = 5, 2
    cm = ConfigMap(FILES)
    cm.apply(runtime(ksqldb))
    status_polls = [r["path"] for r in ksqldb.requests if r["path"].startswith("/status/")]
    assert len(status_polls) == 10 and status_polls[0].startswith("/status/stream/")
    assert sorted(ksqldb.sources) == sorted(NAMES), "dependants created only after their source existed"


def test_drift_missing_objects_are_detected_and_repaired(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES)
    cm.apply(rt)
    ksqldb.drop_behind_the_back("T_ORDER_RECENCY")  # an admin drops it (and what was built from it)
    ksqldb.terminate_behind_the_back("S_CUSTOMER_ORDER_ENRICHED")
    requested: list[tuple[str, str]] = []
    found = drift.check_once(rt, [cm.view()], lambda view, summary: requested.append((view.ref, summary)))
    problems = found["marketing-engine/marketing-engine-ksql"]
    assert any(p.startswith("T_ORDER_RECENCY: missing") for p in problems)
    assert any(p.startswith("T_CUSTOMER_CONSOLIDATED: missing") for p in problems)
    assert any(p.startswith("S_CUSTOMER_ORDER_ENRICHED") and "not running" in p for p in problems)
    assert len(requested) == 1 and "drift:" in requested[0][1] and len(requested[0][1]) <= 250
    # the request annotation makes kopf run the apply handler: it repairs exactly what is missing
    cm.annotations[state.RECONCILE_REQUEST] = requested[0][1]
    before = len(ksqldb.ksql_requests())
    result = cm.apply(rt, reason="changed")
    sent = statements_sent(ksqldb, before)
    # the terminated query's stream is dropped and re-created; the dropped tables are created again.
    # S_SEGMENT_SOURCE only reads the consolidated topic, so ksqlDB did not drop it and it stays.
    # Before the DROP, what can be proven is (EXPLAIN); the consolidated table reads T_ORDER_RECENCY,
    # which is not on the server yet, so it cannot be, and a Note says so.
    explained = [s for s in sent if s.startswith("EXPLAIN")]
    assert sent[:len(explained)] == explained
    assert explained[0].startswith("EXPLAIN CREATE STREAM S_CUSTOMER_ORDER_ENRICHED_EXPLAIN_")
    notes = [e.message for e in result.events if e.reason == "Note"]
    assert any("without an EXPLAIN proof" in n and "T_CUSTOMER_CONSOLIDATED (reads T_ORDER_RECENCY" in n
               for n in notes), notes
    sent = sent[len(explained):]
    assert [" ".join(s.split()[:2]) for s in sent] == ["DROP STREAM", "CREATE STREAM", "CREATE TABLE", "CREATE TABLE"]
    assert "S_CUSTOMER_ORDER_ENRICHED" in sent[0] and "T_ORDER_RECENCY" in sent[2] and "T_CUSTOMER_CONSOLIDATED" in sent[3]
    assert sorted(ksqldb.sources) == sorted(NAMES) and sorted(q.sink for q in ksqldb.queries.values()) == sorted(QUERIES)
    assert ("Warning", "DriftRepaired") in [(e.type, e.reason) for e in result.events]
    assert drift.check_once(rt, [cm.view()], lambda *a: pytest.fail("no drift left")) == {}


def test_drift_check_leaves_pending_changes_and_failures_to_the_apply_handler(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES)
    cm.apply(rt)
    changed = ConfigMap({**FILES, "070-new.sql": "CREATE STREAM IF NOT EXISTS X AS SELECT * FROM S_ORDER_PLACED;"},
                        cm.annotations)
    assert reconcile.drift(changed.view(), rt.client.catalog()) == []
    ksqldb.stop()
    assert drift.check_once(rt, [cm.view()], lambda *a: pytest.fail("unreachable server")) == {}


def test_adopts_objects_that_exist_when_the_state_is_lost(ksqldb):
    rt = runtime(ksqldb)
    ConfigMap(FILES).apply(rt)
    fresh = ConfigMap(FILES)  # same content, annotations lost (ConfigMap re-created)
    before = len(ksqldb.ksql_requests())
    result = fresh.apply(rt)
    sent = statements_sent(ksqldb, before)
    assert len(sent) == 1 and sent[0].startswith("CREATE OR REPLACE STREAM S_SEGMENT_MATERIALIZED")
    adopted = next(e for e in result.events if e.reason == "Adopted")
    assert adopted.type == "Warning" and "T_CUSTOMER_CONSOLIDATED" in adopted.message
    assert fresh.outcomes()["T_CUSTOMER_PROFILE"] == "exists"
    assert fresh.annotations[state.APPLIED_HASH] == TOPOLOGY.content_hash


def test_delete_with_policy_drop_terminates_and_drops_but_keeps_every_topic(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES, {state.DELETION_POLICY: "drop"})
    cm.apply(rt)
    topics_before = set(ksqldb.topics)
    result = reconcile.delete(cm.view(), rt)
    assert ksqldb.sources == {} and ksqldb.queries == {}
    assert ksqldb.topics == topics_before and ksqldb.deleted_topics == []
    assert result.events[0].reason == "Dropped" and "topics kept" in result.summary
    dropped = [s.name for s in result.executed if s.action == "drop"]
    assert dropped == list(reversed(NAMES)), "dependants first"


def test_delete_with_default_policy_keeps_everything(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(FILES)
    cm.apply(rt)
    before = len(ksqldb.requests)
    result = reconcile.delete(cm.view(), rt)
    assert len(ksqldb.requests) == before and sorted(ksqldb.sources) == sorted(NAMES)
    assert result.events[0].reason == "Kept"


def test_removed_statement_follows_the_deletion_policy(ksqldb):
    rt = runtime(ksqldb)
    files = {**FILES, "070-extra.sql": "CREATE STREAM IF NOT EXISTS EXTRA AS SELECT * FROM S_ORDER_PLACED;"}
    cm = ConfigMap(files)
    cm.apply(rt)
    cm.data = FILES
    result = cm.apply(rt)
    assert "EXTRA" in ksqldb.sources and "EXTRA" not in cm.records
    assert any("kept" in e.message and "EXTRA" in e.message for e in result.events)
    cm.data = files
    cm.apply(rt)
    cm.annotations[state.DELETION_POLICY] = "drop"
    cm.data = FILES
    cm.apply(rt)
    assert "EXTRA" not in ksqldb.sources and "EXTRA" in ksqldb.topics


@pytest.fixture
def empty_registry() -> Iterator[SchemaRegistryDouble]:
    """A registry of this test's own: the session's has subjects other tests' producers registered."""
    double = SchemaRegistryDouble().start()
    try:
        yield double
    finally:
        double.stop()


def test_waits_for_the_producers_schema_subjects_before_creating_avro_sources(ksqldb, empty_registry):
    schema_registry = empty_registry
    rt = runtime(ksqldb, registry_url=schema_registry.url)
    cm = ConfigMap(FILES)

    def register(topic: topics.Topic) -> None:
        r = requests.post(f"{schema_registry.url}/subjects/{topic.subject}/versions",
                          json={"schema": topic.schema_str}, timeout=5,
                          headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        assert r.status_code == 200, r.text

    register(topics.CUSTOMER_PROFILE)
    with pytest.raises(Retry) as err:
        cm.apply(rt, retry=5)
    assert f"{topics.ORDER_PLACED.name}-value" in str(err.value)
    assert err.value.delay == 30.0, "a cheap lookup: polled more often than the ksqlDB backoff (160s here)"
    assert any(e.reason == "WaitingForSchema" for e in err.value.result.events)
    # what comes before the waiting stream in dependency order is created; it and all after it wait
    before = NAMES[:NAMES.index("S_ORDER_PLACED")]
    assert before and sorted(ksqldb.sources) == sorted(before)
    assert cm.outcomes()["S_ORDER_PLACED"] == "pending" and cm.outcomes()["T_CUSTOMER_CONSOLIDATED"] == "pending"
    register(topics.ORDER_PLACED)
    register(topics.ACTIVATION_STATUS)
    # the score job's subject is still missing: the web UI's view is built, only the segments wait
    with pytest.raises(Retry) as err:
        cm.apply(rt)
    assert f"{topics.PROPENSITY_SCORE.name}-value" in str(err.value)
    assert "T_CUSTOMER_CONSOLIDATED" in ksqldb.sources
    waiting = NAMES[NAMES.index("T_PROPENSITY_SCORE"):]
    assert "S_SEGMENT_MATERIALIZED" in waiting and not set(waiting) & set(ksqldb.sources)
    assert state.APPLIED_HASH not in cm.annotations, "not complete while something waits"
    register(topics.PROPENSITY_SCORE)
    cm.apply(rt)
    assert sorted(ksqldb.sources) == sorted(NAMES)
    assert cm.annotations[state.APPLIED_HASH]


def test_state_annotation_stays_small_for_the_real_topology(ksqldb):
    cm = ConfigMap(FILES)
    cm.apply(runtime(ksqldb))
    doc = json.loads(cm.annotations[state.STATE])
    assert [row[0] for row in doc["s"]] == NAMES and all(len(row[2]) == 16 for row in doc["s"])
    assert sum(len(v) for v in cm.annotations.values()) < 3000
