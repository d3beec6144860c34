"""The ksqlDB TEST DOUBLE keeps the documented shapes (reference.md), and the operator's client reads
them right. Raw HTTP first, so a client bug cannot hide a double bug."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest
import requests

from operators.ksql.client import KsqlClient, RequestRejected, StatementFailed, Unavailable
from tests.support.ksqldb_double import CONTENT_TYPE, KsqlDbDouble

HEADERS = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
SRC = "CREATE STREAM IF NOT EXISTS SRC (k STRING KEY, v INT) WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON');"


@pytest.fixture
def ksqldb() -> Iterator[KsqlDbDouble]:
    double = KsqlDbDouble({"src", "other"}).start()
    try:
        yield double
    finally:
        double.stop()


def post(double: KsqlDbDouble, *ksql: str, **extra) -> requests.Response:
    """POST /ksql with the statements joined into one request."""
    return requests.post(double.url + "/ksql", json={"ksql": " ".join(ksql), "streamsProperties": {}, **extra},
                         headers=HEADERS, timeout=5)


def test_create_answers_current_status_with_increasing_sequence_numbers(ksqldb):
    r = post(ksqldb, SRC, "CREATE STREAM F AS SELECT * FROM SRC;")
    assert r.status_code == 200 and r.headers["Content-Type"] == CONTENT_TYPE
    first, second = r.json()
    assert first["@type"] == "currentStatus" and first["commandId"] == "stream/`SRC`/create"
    assert first["commandStatus"]["status"] == "SUCCESS"
    assert second["commandStatus"]["queryId"] == "CSAS_F_2"
    assert second["commandSequenceNumber"] == first["commandSequenceNumber"] + 1
    assert "F" in ksqldb.topics, "AS SELECT creates its sink topic"


def test_if_not_exists_on_an_existing_name_is_a_warning_and_changes_nothing(ksqldb):
    post(ksqldb, SRC)
    r = post(ksqldb, SRC.replace("v INT", "v INT, w INT"))
    assert r.status_code == 200
    (entity,) = r.json()
    assert entity["@type"] == "warning_entity" and "already exists" in entity["message"]
    assert ksqldb.sources["SRC"].create.columns == ["V"]


def test_statement_error_is_400_40001_with_the_entities_that_ran_before(ksqldb):
    r = post(ksqldb, SRC, "CREATE STREAM SRC (k STRING KEY) WITH (KAFKA_TOPIC='src');")
    assert r.status_code == 400
    body = r.json()
    assert body["@type"] == "statement_error" and body["error_code"] == 40001
    assert "already exists" in body["message"] and body["statementText"].startswith("CREATE STREAM SRC (k")
    assert [e["@type"] for e in body["entities"]] == ["currentStatus"]


@pytest.mark.parametrize("setup,statement,message", [
    ("", "CREATE STREAM X AS SELECT * FROM NOPE;", "NOPE does not exist"),
    ("", "CREATE STREAM X (a INT) WITH (KAFKA_TOPIC='missing', VALUE_FORMAT='JSON');", "Topic 'missing' does not exist"),
    ("CREATE TABLE T AS SELECT k, COUNT(*) AS n FROM SRC GROUP BY k;",
     "CREATE OR REPLACE TABLE T AS SELECT k, COUNT(*) AS n FROM SRC WHERE v > 1 GROUP BY k;",
     "StreamAggregate must have matching columns"),
    ("CREATE TABLE T2 AS SELECT k, COUNT(*) AS n FROM SRC GROUP BY k; CREATE TABLE T AS SELECT k, SUM(n) AS s "
     "FROM T2 GROUP BY k;", "CREATE OR REPLACE TABLE T AS SELECT k, SUM(n) AS s FROM T2 WHERE n > 1 GROUP BY k;",
     "Upgrades not yet supported for TableAggregate"),
    ("CREATE TABLE T AS SELECT k, COUNT(*) AS n FROM SRC GROUP BY k; CREATE STREAM J AS SELECT s.k, t.n "
     "FROM SRC s JOIN T t ON s.k = t.k;", "CREATE OR REPLACE STREAM J AS SELECT s.k, t.n FROM SRC s JOIN T t "
     "ON s.k = t.k WHERE t.n > 0;", "Upgrades not yet supported for StreamTableJoin"),
    ("CREATE STREAM F AS SELECT k, v FROM SRC;", "CREATE OR REPLACE STREAM F AS SELECT k FROM SRC;",
     "Cannot upgrade data source"),
    ("CREATE SOURCE TABLE ST (k STRING PRIMARY KEY, v INT) WITH (KAFKA_TOPIC='other', VALUE_FORMAT='JSON');",
     "CREATE OR REPLACE TABLE ST (k STRING PRIMARY KEY, v INT, w INT) WITH (KAFKA_TOPIC='other', "
     "VALUE_FORMAT='JSON');", "not supported on source"),
    ("CREATE STREAM F AS SELECT * FROM SRC;", "DROP STREAM SRC;", "You need to drop them before dropping SRC"),
    ("", "DROP TABLE SRC;", "Incompatible data source type is STREAM"),
    ("", "TERMINATE CSAS_NOPE_1;", "Unknown queryId"),
])
def test_refusals_like_ksqldb(ksqldb, setup, statement, message):
    assert post(ksqldb, SRC, setup).status_code == 200
    r = post(ksqldb, statement)
    assert r.status_code == 400 and r.json()["error_code"] == 40001
    assert message in r.json()["message"]


def test_stateless_or_replace_upgrades_in_place_keeping_the_query_id(ksqldb):
    post(ksqldb, SRC, "CREATE STREAM F AS SELECT k, v FROM SRC WHERE v > 0;")
    r = post(ksqldb, "CREATE OR REPLACE STREAM F AS SELECT k, v FROM SRC WHERE v > 5;")
    assert r.status_code == 200 and r.json()[0]["commandStatus"]["queryId"] == "CSAS_F_2"
    assert list(ksqldb.queries) == ["CSAS_F_2"] and "v > 5" in ksqldb.queries["CSAS_F_2"].statement


def test_drop_terminates_its_own_query_and_keeps_the_topic_unless_asked(ksqldb):
    post(ksqldb, SRC, "CREATE STREAM F AS SELECT * FROM SRC;")
    assert post(ksqldb, "DROP STREAM F;").status_code == 200
    assert "F" not in ksqldb.sources and not ksqldb.queries and "F" in ksqldb.topics
    post(ksqldb, "CREATE STREAM F AS SELECT * FROM SRC;")
    post(ksqldb, "DROP STREAM F DELETE TOPIC;")
    assert ksqldb.deleted_topics == ["F"]


def test_select_belongs_to_the_query_endpoint(ksqldb):
    r = post(ksqldb, "SELECT * FROM SRC EMIT CHANGES;")
    assert r.status_code == 400 and r.json()["error_code"] == 40002


def test_show_entities(ksqldb):
    post(ksqldb, SRC, "CREATE TABLE T AS SELECT k, COUNT(*) AS n FROM SRC GROUP BY k;")
    streams, tables, queries = post(ksqldb, "SHOW STREAMS; LIST TABLES; SHOW QUERIES;").json()
    assert streams["@type"] == "streams" and streams["streams"][0]["name"] == "SRC"
    assert streams["streams"][0]["topic"] == "src" and streams["streams"][0]["type"] == "STREAM"
    assert tables["tables"][0] | {"isWindowed": False} == tables["tables"][0] and tables["tables"][0]["name"] == "T"
    (q,) = queries["queries"]
    assert q["sinks"] == ["T"] and q["id"].startswith("CTAS_T_") and q["state"] == "RUNNING"
    assert q["queryString"].startswith("CREATE TABLE T")


def test_wrong_content_type_is_415(ksqldb):
    r = requests.post(ksqldb.url + "/ksql", data='{"ksql": "SHOW STREAMS;"}',
                      headers={"Content-Type": "text/plain"}, timeout=5)
    assert r.status_code == 415


def test_initializing_answers_50302_with_retry_after_and_an_unhealthy_healthcheck(ksqldb):
    ksqldb.initializing = True
    r = post(ksqldb, "SHOW STREAMS;")
    assert r.status_code == 503 and r.json()["error_code"] == 50302 and r.headers["Retry-After"] == "10"
    h = requests.get(ksqldb.url + "/healthcheck", timeout=5)
    assert h.status_code == 503 and h.json()["isHealthy"] is False
    ksqldb.initializing = False
    h = requests.get(ksqldb.url + "/healthcheck", timeout=5)
    assert h.status_code == 200 and h.json()["isHealthy"] is True and set(h.json()["details"]) >= {"kafka"}
    info = requests.get(ksqldb.url + "/info", timeout=5).json()["KsqlServerInfo"]
    assert info["version"] == "0.29.0" and info["serverStatus"] == "RUNNING"


def test_queued_command_finishes_at_the_status_endpoint(ksqldb):
    ksqldb.queue_next, ksqldb.polls_to_finish = 1, 2
    (entity,) = post(ksqldb, SRC).json()
    assert entity["commandStatus"]["status"] == "QUEUED" and "SRC" not in ksqldb.sources
    url = ksqldb.url + "/status/" + urllib.parse.quote(entity["commandId"], safe="/")
    assert requests.get(url, timeout=5).json()["status"] == "EXECUTING"
    assert requests.get(url, timeout=5).json()["status"] == "SUCCESS" and "SRC" in ksqldb.sources
    assert requests.get(ksqldb.url + "/status/stream/`NOPE`/create", timeout=5).status_code == 404


def test_a_queued_command_blocks_dependants_until_its_sequence_number_is_passed(ksqldb):
    ksqldb.queue_next = 1
    (entity,) = post(ksqldb, SRC).json()
    r = post(ksqldb, "CREATE STREAM F AS SELECT * FROM SRC;")
    assert r.status_code == 400 and "SRC does not exist" in r.json()["message"]
    r = post(ksqldb, "CREATE STREAM F AS SELECT * FROM SRC;", commandSequenceNumber=entity["commandSequenceNumber"])
    assert r.status_code == 200


# ---- the operator's client against the double ------------------------------------------------------


def test_client_sends_the_documented_headers_and_passes_sequence_numbers_forward(ksqldb):
    client = KsqlClient(ksqldb.url)
    first = client.execute(SRC, {"auto.offset.reset": "earliest"})
    second = client.execute("CREATE STREAM F AS SELECT * FROM SRC;")
    assert (first.status, second.query_id) == ("SUCCESS", "CSAS_F_2")
    reqs = ksqldb.ksql_requests()
    assert all(r["headers"]["Content-Type"] == CONTENT_TYPE and r["headers"]["Accept"] == CONTENT_TYPE
               for r in reqs)
    assert "commandSequenceNumber" not in reqs[0]["body"]
    assert reqs[0]["body"]["streamsProperties"] == {"auto.offset.reset": "earliest"}
    assert reqs[1]["body"]["commandSequenceNumber"] == first.sequence == 1


def test_client_follows_non_final_status_and_maps_warnings(ksqldb):
    ksqldb.queue_next, ksqldb.polls_to_finish = 1, 3
    client = KsqlClient(ksqldb.url, sleep=lambda s: None)
    outcome = client.execute(SRC)
    assert outcome.status == "SUCCESS" and "SRC" in ksqldb.sources
    assert sum(1 for r in ksqldb.requests if r["path"].startswith("/status/")) == 3
    assert client.execute(SRC).status == "WARNING"


def test_client_times_out_a_command_that_never_finishes(ksqldb):
    ksqldb.queue_next, ksqldb.polls_to_finish = 1, 10_000
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    client = KsqlClient(ksqldb.url, command_timeout=5, sleep=sleep, clock=lambda: now[0])
    with pytest.raises(Unavailable, match="still"):
        client.execute(SRC)


def test_client_error_mapping(ksqldb):
    client = KsqlClient(ksqldb.url)
    with pytest.raises(StatementFailed) as err:
        client.execute("CREATE STREAM F AS SELECT * FROM NOPE;")
    assert err.value.error_code == 40001 and "NOPE does not exist" in str(err.value)
    ksqldb.initializing = True
    with pytest.raises(Unavailable) as unavailable:
        client.execute(SRC)
    assert unavailable.value.retry_after == 10.0
    assert client.health().healthy is False
    ksqldb.initializing = False
    ksqldb.fail_next = [404]
    with pytest.raises(RequestRejected):
        client.execute(SRC)
    with pytest.raises(Unavailable, match="unreachable"):
        KsqlClient("http://127.0.0.1:9", timeout=2).execute(SRC)
    assert KsqlClient("http://127.0.0.1:9", timeout=2).health().healthy is False


def test_client_catalog(ksqldb):
    client = KsqlClient(ksqldb.url)
    client.execute(SRC)
    client.execute("CREATE TABLE T AS SELECT k, COUNT(*) AS n FROM SRC GROUP BY k;")
    catalog = client.catalog()
    assert {n: (s.kind, s.topic) for n, s in catalog.sources.items()} == {"SRC": ("STREAM", "src"), "T": ("TABLE", "T")}
    assert [q.sinks for q in catalog.writers("T")] == [("T",)] and catalog.writers("SRC") == []


def test_stream_aggregation_filter_change_on_columns_already_read_is_an_upgrade(ksqldb):
    post(ksqldb, SRC, "CREATE TABLE T AS SELECT k, COUNT(*) AS n FROM SRC WHERE v >= 0 GROUP BY k;")
    r = post(ksqldb, "CREATE OR REPLACE TABLE T AS SELECT k, COUNT(*) AS n FROM SRC WHERE v > 0 GROUP BY k;")
    assert r.status_code == 200 and "v > 0" in ksqldb.sources["T"].statement
