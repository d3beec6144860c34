"""Forgetting customers on the default seed's Delta tables: how long the erasure job takes and how much
memory its driver needs (the ScheduledSparkApplication's request comes from here).

    python -m bench.bench_erasure [--customers N] [--days D] [--forget K]

The default seed goes through the real bronze, silver, gold and score jobs (batch runs, a real broker,
the Schema Registry TEST DOUBLE). K customers are forgotten with ``python -m forget``'s code (the
request and the redacted profile). Then ``python -m spark.jobs.erasure --from-topic`` runs as the
cluster runs it: its own process, driver-only ``local[2]``, the chart's heap and JVM flags and
MALLOC_ARENA_MAX, resident memory of the process tree sampled every second (bench_memory's sampler).
Run 1 finds the streaming readers' checkpoints behind its purge (the jobs ran before it) and defers
those VACUUMs (ERASURE_READER_WAIT_S=0); the jobs then read on; run 2 does the deferred VACUUMs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import time

from bench.bench_memory import LAPTOP_HEAP, LAPTOP_JAVA_OPTIONS, MALLOC_ARENA_MAX, PY, Sampler
from tests.support.paths import REPO, SPARK_JARS


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_erasure", description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--forget", type=int, default=3, help="customers to forget")
    args = ap.parse_args(argv)

    from forget import request
    from forget.settings import ForgetSettings
    from schemas import topics
    from spark.jobs import bronze, gold, score, silver
    from tests.support import pipeline

    from .spark_env import engines, seeded

    with engines() as env:
        started = time.monotonic()
        jobs, events, sent = seeded(env, args.customers, args.days)
        for job in (bronze, silver, gold, score):
            pipeline.run(job, env.spark, jobs)
        print(f"seed {args.customers} customers x {args.days} days ({sent} records) through bronze, silver, gold, "
              f"score in {time.monotonic() - started:.0f} s", flush=True)
        ids = sorted({e.key for e in events if e.topic is topics.CUSTOMER_PROFILE})[:args.forget]
        common = {"KAFKA_BOOTSTRAP_SERVERS": env.broker.bootstrap, "SCHEMA_REGISTRY_URL": env.registry.url,
                  "TOPIC_PREFIX": jobs.topic_prefix}
        forget = ForgetSettings.from_env({**common, "FORGET_REQUESTED_BY": "bench"})
        for customer_id in ids:
            request.publish(forget, request.build(customer_id, "bench"))
        child_env = {
            **os.environ, **common, "PYTHONPATH": str(REPO), "DELTA_ROOT": jobs.delta_root,
            "SPARK_MASTER": "local[2]", "SPARK_JARS_DIR": str(SPARK_JARS), "PYSPARK_PYTHON": PY,
            "PYSPARK_SUBMIT_ARGS": shlex.join(["--driver-memory", LAPTOP_HEAP, "--driver-java-options",
                                               LAPTOP_JAVA_OPTIONS, "pyspark-shell"]),
            "MALLOC_ARENA_MAX": MALLOC_ARENA_MAX, "LOG_LEVEL": "WARNING",
        }
        with Sampler(1.0) as sampler:
            for run, wait in ((1, "0"), (2, "120")):
                if run == 2:
                    t_jobs = time.monotonic()
                    for job in (bronze, silver, gold, score):  # the readers read past the erasure
                        pipeline.run(job, env.spark, jobs)
                    print(f"the four jobs read on past the erasure in {time.monotonic() - t_jobs:.0f} s", flush=True)
                t0 = time.monotonic()
                proc = subprocess.Popen([PY, "-m", "spark.jobs.erasure", "--from-topic"], cwd=REPO, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env={**child_env, "ERASURE_READER_WAIT_S": wait})
                series = sampler.watch(f"erasure-{run}", proc.pid)
                out, _ = proc.communicate(timeout=1800)
                took = time.monotonic() - t0
                sampler.forget(f"erasure-{run}")
                print(f"erasure run {run} (ERASURE_READER_WAIT_S={wait}): exit {proc.returncode}, {took:.0f} s, "
                      f"peak RSS {series.peak():.0f} MiB (raw {series.raw_peak():.0f}), "
                      f"median {series.steady():.0f} MiB over {len(series.samples)} samples", flush=True)
                for line in out.splitlines():
                    if line.startswith("erasure:") or proc.returncode:
                        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
