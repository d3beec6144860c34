"""Order enrichment on the default seed: the share of enriched orders with null profile columns among
those whose customer's profile was published first (issue 13, defect 1).

The default seed run (seed.settings defaults: 1000 customers, 90 days, seed 42; the CLI's own Run and
the Kafka transport, keys placed by murmur2) is published to a real Apache Kafka broker (started here
from the test jars unless BENCH_KAFKA_BOOTSTRAP points at one), then S_CUSTOMER_ORDER_ENRICHED is
computed by the ksqlDB TEST DOUBLE's data plane (tests/support/ksqldb_dataplane.py) as one burst
backfill from `earliest`, for the topology in ksql/ and for the one before issue 13 (the join read the
derived T_CUSTOMER_PROFILE). "Profile first" compares record timestamps (the customer's first profile
record older than the order record). This is the double's model of ksqlDB, not a ksqlDB server.

Run: python -m bench.bench_ksql_join
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from tests.support.ksqldb_dataplane import ORDER_PATH_FILES, OrderPath, old_join, publish_default_seed

KSQL_DIR = Path(__file__).resolve().parents[1] / "ksql"


def measure(bootstrap: str, registry_url: str) -> dict[str, dict[str, float]]:
    new = {name: (KSQL_DIR / name).read_text() for name in ORDER_PATH_FILES}
    old = {**new, "030-orders.sql": old_join(new["030-orders.sql"])}
    results = {}
    for label, files in (("ksql/ (join over the profile topic)", new), ("before issue 13 (derived table)", old)):
        path = OrderPath(bootstrap, registry_url, files)
        try:
            sent = publish_default_seed(path)
            t0 = time.perf_counter()
            path.plane.run()
            elapsed = time.perf_counter() - t0
            r = path.report()
        finally:
            path.close()
        results[label] = {"events": sent, "orders": r.orders, "profile_first": r.profile_first,
                          "null_where_profile_first": r.null_where_profile_first, "share": r.share,
                          "nulls": r.nulls, "seconds": elapsed}
    return results


def main(argv: list[str] | None = None) -> int:
    from tests.support.schema_registry_double import SchemaRegistryDouble

    registry = SchemaRegistryDouble().start()
    broker = None
    bootstrap = os.environ.get("BENCH_KAFKA_BOOTSTRAP", "")
    workdir = tempfile.TemporaryDirectory(prefix="bench-ksql-join-")
    try:
        if not bootstrap:
            from tests.support.kafka_broker import start_broker

            print("starting a Kafka broker (KRaft) from .cache/jars/kafka ...", file=sys.stderr)
            broker = start_broker(Path(workdir.name))
            bootstrap = broker.bootstrap
        results = measure(bootstrap, registry.url)
    finally:
        if broker is not None:
            broker.stop()
        registry.stop()
        workdir.cleanup()

    print("order enrichment on the default seed (burst backfill from earliest; ksqlDB test double's data plane)")
    for label, r in results.items():
        print(f"  {label:<38} {r['orders']:>5.0f} enriched orders, {r['profile_first']:>5.0f} with the profile "
              f"first, {r['null_where_profile_first']:>5.0f} of those with null profile columns "
              f"= {r['share']:.1%} ({r['nulls']:.0f} nulls in all; {r['events']:.0f} events, "
              f"join pass {r['seconds']:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
