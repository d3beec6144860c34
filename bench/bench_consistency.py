"""The consistency check on the default seed: disagreement after both sides settle (expected 0),
how long one check takes and how much memory it needs (the CronJob's request comes from here).

    python -m bench.bench_consistency [--customers N] [--days D]

The default seed (1,000 customers, 90 days: late events and duplicates included) goes through the
real bronze, silver, gold and score jobs (batch runs, a real broker) and through the TEST DOUBLE of
ksqlDB's consolidated view (no ksqlDB runs here; tests/support/ksqldb_view_double.py). Then
``python -m consistency`` runs as the CronJob runs it, in its own process: its line, wall time and
peak resident memory (ru_maxrss of the child) are printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_consistency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--days", type=int, default=90)
    args = ap.parse_args(argv)

    from spark.jobs import bronze, gold, score, silver
    from tests.support import pipeline
    from tests.support.ksqldb_view_double import KsqlDbViewDouble

    from .spark_env import engines, seeded

    with engines() as env:
        started = time.monotonic()
        jobs, _events, sent = seeded(env, args.customers, args.days)
        view = KsqlDbViewDouble(env.broker.bootstrap, env.registry.url, from_beginning=True,
                                topic_prefix=jobs.topic_prefix).start()
        for job in (bronze, silver, gold, score):
            pipeline.run(job, env.spark, jobs)
        while len(view.customers) < args.customers:
            time.sleep(0.5)
        time.sleep(3)
        view.stop()
        print(f"seed {args.customers} customers x {args.days} days ({sent} records) through both sides "
              f"in {time.monotonic() - started:.0f} s", flush=True)
        env_vars = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": env.broker.bootstrap,
                    "SCHEMA_REGISTRY_URL": env.registry.url, "TOPIC_PREFIX": jobs.topic_prefix}
        for settle in ("0", "300"):
            t0 = time.monotonic()
            child = subprocess.Popen([sys.executable, "-m", "consistency"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**env_vars, "CONSISTENCY_SETTLE_S": settle})
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (ru_maxrss: KiB on Linux)
            out, err = child.stdout.read(), child.stderr.read()
            took = time.monotonic() - t0
            print(f"CONSISTENCY_SETTLE_S={settle}: exit {os.waitstatus_to_exitcode(status)}, {took:.1f} s, "
                  f"peak RSS of the check {usage.ru_maxrss / 1024:.0f} MiB")
            print("  " + (out.strip() or err.strip()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
