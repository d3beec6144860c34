"""The operator-wide drift loop against the ksqlDB TEST DOUBLE: it notices what disappeared from the
server, asks for a reconcile of exactly the affected ConfigMap, survives outages, and stops on request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from operators.ksql import drift, reconcile
from operators.ksql.reconcile import ConfigMapView, Runtime
from operators.ksql.settings import OperatorSettings
from schemas import topics
from tests.support.ksqldb_double import KsqlDbDouble

KSQL_DIR = Path(__file__).resolve().parents[2] / "ksql"
FILES = {p.name: p.read_text() for p in sorted(KSQL_DIR.glob("*.sql"))}


@pytest.fixture
def ksqldb() -> Iterator[KsqlDbDouble]:
    double = KsqlDbDouble({t.name for t in topics.KSQL_INPUT_TOPICS}).start()
    try:
        yield double
    finally:
        double.stop()


def applied(rt: Runtime, name: str, files: dict[str, str]) -> ConfigMapView:
    result = reconcile.apply(ConfigMapView("ns", name, files, {}), rt)
    return ConfigMapView("ns", name, files, {k: v for k, v in result.annotations.items() if v is not None})


def test_loop_requests_a_reconcile_for_the_drifted_configmap_only_and_stops(ksqldb):
    rt = Runtime.build(OperatorSettings.from_env({
        "KSQLDB_URL": ksqldb.url, "SCHEMA_REGISTRY_URL": "", "KSQL_DRIFT_INTERVAL_SECONDS": "0.05"}))
    topology = applied(rt, "topology", FILES)
    other = applied(rt, "other", {"a.sql": "CREATE STREAM IF NOT EXISTS OTHER AS SELECT * FROM S_ORDER_PLACED;"})
    requests: list[tuple[str, str]] = []

    async def scenario() -> None:
        stopped = asyncio.Event()
        task = asyncio.create_task(drift.run(rt, lambda: [topology, other],
                                             lambda cm, summary: requests.append((cm.ref, summary)), stopped))
        await asyncio.sleep(0.3)
        assert requests == [], "no drift, no request"
        ksqldb.initializing = True  # an outage: the loop logs and carries on
        await asyncio.sleep(0.3)
        assert not task.done() and requests == []
        ksqldb.initializing = False
        ksqldb.drop_behind_the_back("S_SEGMENT_MATERIALIZED")
        for _ in range(40):
            if requests:
                break
            await asyncio.sleep(0.05)
        stopped.set()
        await asyncio.wait_for(task, timeout=2)

    asyncio.run(scenario())
    assert requests, "the drift was noticed"
    assert {ref for ref, _ in requests} == {"ns/topology"}, "only the ConfigMap that lost something"
    assert "S_SEGMENT_MATERIALIZED: missing on the server" in requests[0][1]
