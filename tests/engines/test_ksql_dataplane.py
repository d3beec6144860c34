"""The order path of ksql/ through the ksqlDB TEST DOUBLE's data plane (tests/support/ksqldb_dataplane.py)
on the real Kafka broker, with records published by the seed's own Kafka transport (issue 13, defect 1).

* Co-partitioning: a stream record joins only table rows of its own partition, so keys placed by CRC32
  on one side and by murmur2 on the other lose their profile exactly where the two partitions differ.
* The backfill race: a join reading a table that ANOTHER query writes (the old topology) misses
  profiles in a burst backfill; the join over the profile topic itself (one task, time-aligned) does not.
* Measured on the default seed: no enriched order whose profile came first has null profile columns.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from schemas import topics
from schemas.partitioning import partition_for_key
from seed.simulator import SimConfig, Simulator
from tests.support.ksqldb_dataplane import (
    ENRICHED,
    ORDER_PATH_FILES,
    KsqlDataPlane,
    OrderPath,
    UnsupportedStatement,
    old_join,
    publish_default_seed,
)

KSQL_DIR = Path(__file__).resolve().parents[2] / "ksql"
PARTITIONS = 3
NEW = {name: (KSQL_DIR / name).read_text() for name in ORDER_PATH_FILES}
OLD = {**NEW, "030-orders.sql": old_join(NEW["030-orders.sql"])}


def crc32_partition(key: str) -> int:
    """librdkafka's default (consistent_random) placement of a keyed record."""
    return zlib.crc32(key.encode()) % PARTITIONS


@pytest.fixture
def order_path(kafka_broker, schema_registry):
    made: list[OrderPath] = []

    def make(files: dict[str, str]) -> OrderPath:
        path = OrderPath(kafka_broker.bootstrap, schema_registry.url, files, PARTITIONS)
        made.append(path)
        return path

    yield make
    for path in made:
        path.close()


def events(customers: int, seed: int):
    evs = list(Simulator(SimConfig(customers=customers, days=30, seed=seed)).events())
    profiles = [(e.key, e.record) for e in evs if e.topic is topics.CUSTOMER_PROFILE]
    orders = [(e.key, e.record) for e in evs if e.topic is topics.ORDER_PLACED]
    return profiles, orders


def differing(keys) -> set[str]:
    return {k for k in keys if crc32_partition(k) != partition_for_key(k, PARTITIONS)}


def test_the_sample_has_keys_whose_crc32_and_murmur2_partitions_differ_and_agree():
    profiles, orders = events(40, 7)
    keys = {k for k, _ in orders}
    assert 5 <= len(differing(keys)) < len(keys), "the co-partitioning tests need both kinds of keys"


@pytest.mark.parametrize("case", ["old topology, everything CRC32", "new topology, profiles murmur2 + orders CRC32"])
def test_co_partitioning_defect_loses_exactly_the_keys_whose_partitions_differ(order_path, case):
    """Profiles first (processed), orders later: only the partition placement can lose a profile."""
    old = case.startswith("old")
    path = order_path(OLD if old else NEW)
    profiles, orders = events(40, 7)
    profile_publisher = path.publisher("consistent_random" if old else None)
    assert profile_publisher.publish(topics.CUSTOMER_PROFILE, profiles) == len(profiles)
    profile_publisher.close()
    path.plane.run()  # the profiles are in the (derived) table before any order exists
    order_publisher = path.publisher("consistent_random")
    assert order_publisher.publish(topics.ORDER_PLACED, orders) == len(orders)
    order_publisher.close()
    written = path.plane.run()
    assert written[ENRICHED] == len(orders)
    report = path.report()
    expected = differing({k for k, _ in orders})
    assert report.orders == len(orders) and report.profile_first == len(orders)
    assert report.null_keys == expected, "nulls exactly where CRC32 and murmur2 disagree"
    assert 0 < report.nulls < len(orders)


@pytest.mark.parametrize("topology", ["old", "new"])
def test_burst_backfill_from_earliest(order_path, topology):
    """Everything published (murmur2, profiles first) before the queries start. The old join reads the
    derived T_CUSTOMER_PROFILE, which its own query has not written yet when the join backfills: every
    order misses its profile. The new join reads the profile topic in the same task: none does."""
    path = order_path(OLD if topology == "old" else NEW)
    profiles, orders = events(40, 11)
    publisher = path.publisher()
    publisher.publish(topics.CUSTOMER_PROFILE, profiles)
    publisher.publish(topics.ORDER_PLACED, orders)
    publisher.close()
    if topology == "old":
        assert path.plane.backfill_order() == [ENRICHED, "T_CUSTOMER_PROFILE"], "the reader races ahead"
    else:
        assert list(path.plane.queries) == [ENRICHED], "no other query in the enrichment's path"
    path.plane.run()
    report = path.report()
    assert report.orders == len(orders) and report.profile_first == len(orders)
    if topology == "old":
        assert report.null_where_profile_first == len(orders)
    else:
        assert report.null_where_profile_first == 0 and report.nulls == 0
        # and the values are the profile's as of the order
        first_names = {k: r["first_name"] for k, r in profiles}
        got = path._all(path.plane.queries[ENRICHED].sink.topic)
        assert all(v["first_name"] == first_names[k] and v["customer_id"] == k for k, _, v in got)


def test_timestamp_alignment_within_one_task(order_path):
    """An order published BEFORE its customer's profile joins nothing, even in a backfill where the
    profile is already on the broker: the task processes its inputs in timestamp order."""
    path = order_path(NEW)
    profiles, orders = events(20, 3)
    publisher = path.publisher()
    publisher.publish(topics.ORDER_PLACED, orders)
    publisher.publish(topics.CUSTOMER_PROFILE, profiles)
    publisher.close()
    path.plane.run()
    report = path.report()
    assert report.orders == len(orders) and report.profile_first == 0 and report.nulls == len(orders)


def test_default_seed_has_no_null_profile_where_the_profile_came_first(order_path):
    """The measurement of issue 13 on the default seed (bench/bench_ksql_join.py prints the same)."""
    path = order_path(NEW)
    sent = publish_default_seed(path)
    path.plane.run()
    report = path.report()
    print(f"default seed: {sent} events, {report.orders} enriched orders, {report.profile_first} with the "
          f"profile first, {report.null_where_profile_first} of those with null profile columns "
          f"({report.share:.1%}); {report.nulls} nulls in all")
    assert report.orders == 2719 and report.profile_first > 0.9 * report.orders
    assert report.null_where_profile_first == 0


def test_unsupported_shapes_are_refused_by_name(kafka_broker, schema_registry):
    from tests.support.ksqldb_double import KsqlDbDouble

    double = KsqlDbDouble({topics.ORDER_PLACED.name})
    ddl = ("CREATE STREAM O (`customer_id` STRING KEY, `order_total` DOUBLE) "
           f"WITH (KAFKA_TOPIC='{topics.ORDER_PLACED.name}', KEY_FORMAT='KAFKA', VALUE_FORMAT='AVRO');"
           "CREATE TABLE BIG AS SELECT `customer_id`, SUM(`order_total`) AS s FROM O GROUP BY `customer_id`;"
           "CREATE STREAM F AS SELECT * FROM O WHERE `order_total` > 1;")
    status, reply, _ = double.ksql({"ksql": ddl})
    assert status == 200, reply
    with pytest.raises(UnsupportedStatement, match="BIG.*only LATEST_BY_OFFSET"):
        KsqlDataPlane(double, kafka_broker.bootstrap, schema_registry.url, ["BIG"])
    with pytest.raises(UnsupportedStatement, match="F: expression '\\*' is not supported"):
        KsqlDataPlane(double, kafka_broker.bootstrap, schema_registry.url, ["F"])
