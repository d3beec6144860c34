"""The operator's two safety rules against the ksqlDB TEST DOUBLE over real HTTP:

* prove before destroying: a replacement ksqlDB would refuse is found by EXPLAIN before any TERMINATE or
  DROP, and the server stays exactly as it was (issue 13, defect 2);
* wait while ksqlDB's command runner is busy: /healthcheck is 503 then, /info and /status answer; the
  operator follows its command with back-off and neither gives up nor sends the statement twice
  (issue 13, defect 3).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from operators.ksql import reconcile, state, statements
from operators.ksql.client import KsqlClient
from operators.ksql.reconcile import ConfigMapView, Fail, Retry, Runtime
from operators.ksql.settings import OperatorSettings
from tests.support.ksqldb_double import CONTENT_TYPE, KsqlDbDouble

SOURCE = ("CREATE STREAM IF NOT EXISTS S_ORD (`order_id` STRING KEY, `customer_id` STRING, `total` DOUBLE)\n"
          "    WITH (KAFKA_TOPIC = 'test.orders.v1', PARTITIONS = 1, VALUE_FORMAT = 'JSON');\n")
BY_ID = ("CREATE TABLE IF NOT EXISTS T_BY_ID AS SELECT `order_id`,\n"
         "    LATEST_BY_OFFSET(`customer_id`) AS `customer_id`, LATEST_BY_OFFSET(`total`) AS `total`\n"
         "  FROM S_ORD GROUP BY `order_id` EMIT CHANGES;\n")
SUMMARY = ("CREATE TABLE IF NOT EXISTS T_SUM AS SELECT `customer_id`, COUNT(*) AS `n`, SUM(`total`) AS `spent`{extra}\n"
           "  FROM T_BY_ID GROUP BY `customer_id` EMIT CHANGES;\n")
TOP = "CREATE TABLE IF NOT EXISTS T_TOP AS SELECT * FROM T_SUM WHERE `n` > 1 EMIT CHANGES;\n"


def chain(extra: str = "") -> dict[str, str]:
    """S_ORD -> T_BY_ID -> T_SUM -> T_TOP; ``extra`` edits T_SUM, the middle of the chain."""
    return {"010-source.sql": SOURCE, "020-tables.sql": BY_ID + "\n" + SUMMARY.format(extra=extra) + "\n" + TOP}


@pytest.fixture
def ksqldb() -> Iterator[KsqlDbDouble]:
    double = KsqlDbDouble().start()
    try:
        yield double
    finally:
        double.stop()


def runtime(double: KsqlDbDouble, client: KsqlClient | None = None, **env: str) -> Runtime:
    rt = Runtime.build(OperatorSettings.from_env({"KSQLDB_URL": double.url, "SCHEMA_REGISTRY_URL": "", **env}))
    rt.client = client or KsqlClient(double.url, sleep=lambda s: None)
    return rt


class ConfigMap:
    def __init__(self, files: dict[str, str]):
        self.data = dict(files)
        self.annotations: dict[str, str] = {}

    def apply(self, rt: Runtime, **kw: Any) -> reconcile.Result:
        view = ConfigMapView("ns", "ksql", dict(self.data), dict(self.annotations))
        try:
            result = reconcile.apply(view, rt, **kw)
        except reconcile.Outcome as exc:
            self._store(exc.result)
            raise
        return self._store(result)

    def _store(self, result: reconcile.Result) -> reconcile.Result:
        for key, value in result.annotations.items():
            if value is None:
                self.annotations.pop(key, None)
            else:
                self.annotations[key] = value
        return result

    def outcomes(self) -> dict[str, str]:
        return {name: r.outcome for name, r in state.decode(self.annotations)[0].items()}


def server_state(double: KsqlDbDouble) -> dict[str, Any]:
    """Everything on the (double's) server: streams/tables, persistent queries, topics."""
    with double.lock:
        return copy.deepcopy({
            "sources": {n: (s.kind, s.topic, s.statement) for n, s in double.sources.items()},
            "queries": {q.id: (q.sink, q.statement, q.state, sorted(q.sources)) for q in double.queries.values()},
            "topics": sorted(double.topics), "deleted_topics": list(double.deleted_topics),
            "sequence": double.sequence,
        })


def sent(double: KsqlDbDouble, since: int = 0) -> list[str]:
    return [r["body"]["ksql"] for r in double.ksql_requests()[since:] if not r["body"]["ksql"].startswith("SHOW")]


def ksql(double: KsqlDbDouble, text: str) -> requests.Response:
    return requests.post(double.url + "/ksql", json={"ksql": text, "streamsProperties": {}}, timeout=5,
                         headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE})


# --- defect 2: prove before destroying ------------------------------------------------------------------


def test_a_rejected_edit_in_the_middle_of_a_chain_changes_nothing_on_the_server(ksqldb):
    rt = runtime(ksqldb)
    cm = ConfigMap(chain())
    cm.apply(rt)
    assert sorted(ksqldb.sources) == ["S_ORD", "T_BY_ID", "T_SUM", "T_TOP"]
    applied = dict(cm.annotations)
    before, since = server_state(ksqldb), len(ksqldb.ksql_requests())

    # MAX on a table source: ksqlDB refuses it. The edit needs T_SUM and T_TOP (built on it) recreated.
    cm.data = chain(extra=", MAX(`total`) AS `biggest`")
    with pytest.raises(Fail) as err:
        cm.apply(rt)

    assert server_state(ksqldb) == before, "every stream, table, query and topic exactly as it was"
    requests_sent = sent(ksqldb, since)
    assert requests_sent and all(s.startswith("EXPLAIN ") for s in requests_sent), requests_sent
    assert "T_SUM_EXPLAIN_" in requests_sent[0] and "MAX(`total`)" in requests_sent[0]
    events = [(e.type, e.reason, e.message) for e in err.value.result.events]
    (failed,) = [m for t, r, m in events if r == "StatementFailed" and t == "Warning"]
    assert "020-tables.sql statement 2" in failed and "T_SUM" in failed, failed
    assert ("The aggregation function MAX cannot be applied to a table source, only to a stream source."
            in failed), failed
    assert "statement: CREATE TABLE IF NOT EXISTS T_SUM AS SELECT" in failed, "the statement itself is named"
    assert "nothing was changed" in failed
    # recorded: T_SUM failed (its old digest kept, so the next edit is compared with what runs), the rest as was
    assert cm.outcomes()["T_SUM"] == "failed" and cm.outcomes()["T_TOP"] != "pending"
    assert cm.annotations[state.APPLIED_HASH] == applied[state.APPLIED_HASH]
    assert "cannot be applied to a table source" in (state.decode(cm.annotations)[1] or "")

    # an acceptable edit of the same statement then goes through: both recreated, backfilled
    cm.data = chain(extra=", AVG(`total`) AS `mean`")
    since = len(ksqldb.ksql_requests())
    cm.apply(rt)
    heads = [" ".join(s.split()[:2]) for s in sent(ksqldb, since)]
    assert heads == ["EXPLAIN CREATE", "EXPLAIN CREATE", "TERMINATE " + before_query(before, "T_TOP"),
                     "DROP TABLE", "TERMINATE " + before_query(before, "T_SUM"), "DROP TABLE",
                     "CREATE TABLE", "CREATE TABLE"]
    assert "AVG(`total`)" in ksqldb.sources["T_SUM"].statement and "T_TOP" in ksqldb.sources
    assert cm.outcomes() == {"S_ORD": "unchanged", "T_BY_ID": "unchanged", "T_SUM": "recreated",
                             "T_TOP": "recreated"}
    assert not [n for n in ksqldb.sources if "_EXPLAIN_" in n]


def before_query(snapshot: dict[str, Any], sink: str) -> str:
    return next(qid for qid, (s, *_rest) in snapshot["queries"].items() if s == sink) + ";"


def test_every_statement_built_after_the_teardown_is_proven_before_the_first_drop(ksqldb):
    """The edited statement is fine; what ksqlDB refuses is a new one that the plan would create after
    the teardown and before the chain is rebuilt (dependency order: S_ORD, T_BY_ID, T_LOW, T_SUM, T_TOP)."""
    rt = runtime(ksqldb)
    cm = ConfigMap(chain())
    cm.apply(rt)
    files = chain(extra=", AVG(`total`) AS `mean`")
    files["015-low.sql"] = ("CREATE TABLE IF NOT EXISTS T_LOW AS SELECT `customer_id`, MIN(`total`) AS `low`\n"
                            "  FROM T_BY_ID GROUP BY `customer_id` EMIT CHANGES;\n")
    cm.data = files
    before, since = server_state(ksqldb), len(ksqldb.ksql_requests())
    with pytest.raises(Fail) as err:
        cm.apply(rt)
    assert server_state(ksqldb) == before
    proofs = sent(ksqldb, since)
    # the first refusal (T_LOW, first in dependency order) ends the round: nothing else sent
    assert len(proofs) == 1 and proofs[0].startswith("EXPLAIN CREATE TABLE T_LOW_EXPLAIN_"), proofs
    assert "015-low.sql statement 1" in str(err.value) and "MIN cannot be applied" in str(err.value)


def test_without_the_proof_the_same_edit_would_have_destroyed_the_chain(ksqldb, monkeypatch):
    """The control: what the issue saw on a real ksqlDB, reproduced on the double with the proof off."""
    rt = runtime(ksqldb)
    cm = ConfigMap(chain())
    cm.apply(rt)
    monkeypatch.setattr(reconcile.planner, "proofs", lambda *a, **k: [])
    cm.data = chain(extra=", MAX(`total`) AS `biggest`")
    with pytest.raises(Fail):
        cm.apply(rt)
    assert "T_SUM" not in ksqldb.sources and "T_TOP" not in ksqldb.sources


def test_probe_sql_renames_only_the_object_and_explain_changes_nothing(ksqldb):
    topo = statements.load(chain())
    summary = topo.by_name()["T_SUM"]
    probe = summary.probe_sql()
    assert probe.startswith(f"CREATE TABLE {summary.probe_name} AS SELECT `customer_id`, COUNT(*)")
    assert probe.endswith("EMIT CHANGES;") and summary.probe_name not in topo.by_name()
    rt = runtime(ksqldb)
    ConfigMap(chain()).apply(rt)
    before = server_state(ksqldb)
    description = rt.client.explain(probe)
    assert description["sinks"] == [summary.probe_name] and description["sources"] == ["T_BY_ID"]
    assert [f["name"] for f in description["fields"]][:1] == ["customer_id"]
    assert server_state(ksqldb) == before


# --- the double's EXPLAIN and aggregation rule, as the operator relies on them ---------------------------


def test_double_explain_follows_ksqldb_explain_executor(ksqldb):
    assert ksql(ksqldb, SOURCE).status_code == 200
    ok = ksql(ksqldb, "EXPLAIN CREATE STREAM S_COPY AS SELECT * FROM S_ORD;")
    assert ok.status_code == 200
    (entity,) = ok.json()
    assert entity["@type"] == "queryDescription" and entity["statementText"].startswith("EXPLAIN CREATE")
    assert set(entity["queryDescription"]) >= {"id", "statementText", "fields", "sources", "sinks", "topology",
                                               "executionPlan", "overriddenProperties", "ksqlHostQueryStatus"}
    assert "S_COPY" not in ksqldb.sources and ksqldb.sequence == 1, "no command, no sequence number"
    # what the sandbox refuses: no query; the existing name (plain, IF NOT EXISTS); a missing source
    for text, message in [
        ("EXPLAIN " + SOURCE, "does not run a ksql query"),
        ("EXPLAIN CREATE STREAM S_ORD AS SELECT * FROM S_ORD;", "already exists"),
        ("EXPLAIN CREATE STREAM IF NOT EXISTS S_ORD AS SELECT * FROM S_ORD;", "did not run a ksql query"),
        ("EXPLAIN CREATE STREAM S_X AS SELECT * FROM S_NOWHERE;", "S_NOWHERE does not exist"),
    ]:
        resp = ksql(ksqldb, text)
        assert resp.status_code == 400 and resp.json()["@type"] == "statement_error", text
        assert message in resp.json()["message"], (text, resp.json())


def test_double_refuses_min_max_on_a_table_source_in_create_and_explain(ksqldb):
    assert ksql(ksqldb, SOURCE + BY_ID).status_code == 200
    bad = "CREATE TABLE T_BAD AS SELECT `customer_id`, MIN(`total`), MAX(`total`) FROM T_BY_ID GROUP BY `customer_id`;"
    for text in (bad, "EXPLAIN " + bad):
        resp = ksql(ksqldb, text)
        assert resp.status_code == 400
        assert resp.json()["message"] == ("The aggregation functions MIN and MAX cannot be applied to a table "
                                          "source, only to a stream source.")
    # the same aggregates over a stream are fine
    assert ksql(ksqldb, bad.replace("FROM T_BY_ID", "FROM S_ORD")).status_code == 200
    assert "T_BAD" in ksqldb.sources


# --- defect 3: a busy command runner ------------------------------------------------------------------------


def test_double_busy_command_runner_fails_healthcheck_but_answers_info_and_status(ksqldb):
    ksqldb.occupy_runner(1.0)
    health = requests.get(ksqldb.url + "/healthcheck", timeout=5)
    assert health.status_code == 503 and health.json()["details"]["commandRunner"]["isHealthy"] is False
    assert health.json()["details"]["metastore"]["isHealthy"] is True
    assert requests.get(ksqldb.url + "/info", timeout=5).status_code == 200
    created = ksql(ksqldb, SOURCE).json()[0]
    assert created["commandStatus"]["status"] in {"QUEUED", "EXECUTING"} and "S_ORD" not in ksqldb.sources
    status = requests.get(f"{ksqldb.url}/status/{created['commandId']}", timeout=5).json()
    assert status["status"] == "EXECUTING"
    time.sleep(1.1)
    assert requests.get(f"{ksqldb.url}/status/{created['commandId']}", timeout=5).json()["status"] == "SUCCESS"
    assert "S_ORD" in ksqldb.sources
    assert requests.get(ksqldb.url + "/healthcheck", timeout=5).status_code == 200


class Clock:
    """Real sleeps (the double's commands run on the wall clock), recorded."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        time.sleep(seconds)


def test_the_operator_waits_for_a_busy_command_runner_and_sends_each_statement_once(ksqldb):
    clock = Clock()
    rt = runtime(ksqldb, KsqlClient(ksqldb.url, command_timeout=30, sleep=clock.sleep))
    ksqldb.occupy_runner(1.0)  # someone else's long CREATE OR REPLACE is executing
    ksqldb.command_seconds = 0.3  # and each of ours takes a while too
    assert requests.get(ksqldb.url + "/healthcheck", timeout=5).status_code == 503
    cm = ConfigMap(chain())
    since, started = len(ksqldb.requests), time.monotonic()
    result = cm.apply(rt)  # no Retry: /info says ksqlDB is there, /status says the command is running
    took = time.monotonic() - started
    assert sorted(ksqldb.sources) == ["S_ORD", "T_BY_ID", "T_SUM", "T_TOP"]
    assert set(cm.outcomes().values()) == {"created"} and state.APPLIED_HASH in cm.annotations
    assert [e.reason for e in result.events] == ["Applied"]
    creates = [s for s in sent(ksqldb) if s.startswith("CREATE")]
    assert len(creates) == 4 == len(set(creates)), "each statement sent exactly once"
    assert took >= 1.0 + 4 * 0.3
    polls = [r for r in ksqldb.requests if r["path"].startswith("/status/")]
    assert len(polls) >= 4
    # back-off: the pauses between /status polls of one command grow (0.1, 0.2, 0.4, ...), capped at 2 s
    assert clock.pauses[:3] == [0.1, 0.2, 0.4] and max(clock.pauses) <= 2.0
    ours = [r["path"] for r in ksqldb.requests[since:]]
    assert "/info" in ours and "/healthcheck" not in ours, "readiness is /info, not /healthcheck"


def test_a_command_outlasting_the_command_timeout_is_followed_again_not_reissued(ksqldb):
    """An in-place upgrade (CREATE OR REPLACE) that takes longer than KSQL_COMMAND_TIMEOUT_SECONDS: the
    retry finds the object on the server with the old recorded digest, so it plans the same replace -
    and follows the first command at /status instead of sending the upgrade a second time."""
    copy_sql = "CREATE STREAM IF NOT EXISTS S_COPY AS SELECT `order_id`, `customer_id`{extra} FROM S_ORD EMIT CHANGES;\n"
    clock = Clock()
    rt = runtime(ksqldb, KsqlClient(ksqldb.url, command_timeout=0.5, sleep=clock.sleep))
    cm = ConfigMap({"010-source.sql": SOURCE, "020-copy.sql": copy_sql.format(extra="")})
    cm.apply(rt)
    ksqldb.command_seconds = 1.5
    cm.data["020-copy.sql"] = copy_sql.format(extra=", `total`")
    with pytest.raises(Retry) as err:
        cm.apply(rt)
    assert "still EXECUTING" in str(err.value) and err.value.result.events[-1].reason == "KsqlUnavailable"
    assert cm.outcomes()["S_COPY"] == "pending"
    cm.apply(rt, retry=1)  # kopf's retry; the listing waits for the command (commandSequenceNumber)
    upgrades = [s for s in sent(ksqldb) if s.startswith("CREATE OR REPLACE")]
    assert len(upgrades) == 1, "followed at /status, not sent again"
    assert ksqldb.sources["S_COPY"].create.columns == ["order_id", "customer_id", "total"]
    assert cm.outcomes() == {"S_ORD": "unchanged", "S_COPY": "replaced"} and state.APPLIED_HASH in cm.annotations
