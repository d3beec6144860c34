"""`python -m operators.ksql.plan` (the dry run behind `make ksql-plan`) as a real process against the
ksqlDB TEST DOUBLE: it lists what would be applied and never changes the server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from operators.ksql import reconcile, state, statements
from operators.ksql.reconcile import ConfigMapView, Runtime
from operators.ksql.settings import OperatorSettings
from schemas import topics
from tests.support.ksqldb_double import KsqlDbDouble

REPO = Path(__file__).resolve().parents[2]
KSQL_DIR = REPO / "ksql"
TOPOLOGY = statements.load({p.name: p.read_text() for p in KSQL_DIR.glob("*.sql")})


@pytest.fixture
def ksqldb() -> Iterator[KsqlDbDouble]:
    double = KsqlDbDouble({t.name for t in topics.KSQL_INPUT_TOPICS}).start()
    try:
        yield double
    finally:
        double.stop()


def plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "operators.ksql.plan", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_plan_against_an_empty_server_lists_every_statement_in_order(ksqldb):
    out = plan("--dry-run", "--server", ksqldb.url, str(KSQL_DIR))
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert [line.split()[2] for line in lines] == [s.name for s in TOPOLOGY.sources]
    assert "CREATE TABLE IF NOT EXISTS T_CUSTOMER_CONSOLIDATED" in out.stdout
    assert [r["body"]["ksql"] for r in ksqldb.ksql_requests()] == ["SHOW STREAMS; SHOW TABLES; SHOW QUERIES;"]
    assert ksqldb.sources == {}


def test_plan_against_an_applied_server_with_the_operator_state_shows_only_the_change(ksqldb, tmp_path):
    settings = OperatorSettings.from_env({"KSQLDB_URL": ksqldb.url, "SCHEMA_REGISTRY_URL": ""})
    files = {p.name: p.read_text() for p in KSQL_DIR.glob("*.sql")}
    result = reconcile.apply(ConfigMapView("ns", "cm", files, {}), Runtime.build(settings))
    applied_state = result.annotations[state.STATE]
    out = plan("--server", ksqldb.url, "--state", applied_state, str(KSQL_DIR))
    assert out.returncode == 0 and "nothing to apply" in out.stdout
    executed = list(ksqldb.executed)

    files["030-orders.sql"] = files["030-orders.sql"].replace("LATEST_BY_OFFSET(`order_total`) AS `order_total`",
                                                              "MAX(`order_total`) AS `order_total`")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = plan("--no-sql", "--server", ksqldb.url, "--state", applied_state, str(tmp_path))
    assert out.returncode == 0, out.stderr
    steps = [[w.rstrip(":") for w in line.split()[1:3]] for line in out.stdout.splitlines()
             if line[:4].strip().rstrip(".").isdigit()]
    assert steps[:2] == [["TERMINATE", "T_CUSTOMER_CONSOLIDATED"], ["DROP", "T_CUSTOMER_CONSOLIDATED"]]
    assert ["RECREATE", "T_ORDER_BY_ID"] in steps and ["RECREATE", "T_ORDER_SUMMARY"] in steps
    assert ["RECREATE", "S_CUSTOMER_ORDER_ENRICHED"] not in steps
    assert ksqldb.executed == executed, "a plan never applies anything"


def test_invalid_files_exit_2_with_one_line(tmp_path):
    (tmp_path / "010-bad.sql").write_text("DROP STREAM X;")
    out = plan(str(tmp_path))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "010-bad.sql statement 1" in out.stderr


def test_unreachable_server_exits_2():
    out = plan("--server", "http://127.0.0.1:9", str(KSQL_DIR))
    assert out.returncode == 2 and "unreachable" in out.stderr
