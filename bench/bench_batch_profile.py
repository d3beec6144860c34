"""Where a small micro-batch's time goes: every streaming query of the four jobs, one session, warm JVM.

All four jobs run on one local[2] session with a 1 s trigger (as in bench.bench_freshness, one-session
mode). After a warm-up probe, --probes probe customers (a profile and an order each: a handful of
records) are produced one at a time, each only after the previous one was scored, so every query
runs one small batch per probe. For every query it prints, as medians over those batches:

  * the StreamingQuery progress ``durationMs`` breakdown (latestOffset, getBatch, queryPlanning,
    addBatch = the foreachBatch body, walCommit, commitOffsets) and triggerExecution, the whole batch;
  * the body's steps: every Spark action and Delta call the body makes (collect/first/count/
    localCheckpoint/save, MERGE execute, DeltaTable.forPath, history, the status send), timed from
    Python and named by the calling function and line;
  * the Spark jobs launched in the batch (from Spark's own status store: the query's job group and
    the batch's time window) and the wall time they took, grouped by the job's call site.

Run: python -m bench.bench_batch_profile [--probes 6] [--trigger "1 second"]
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from delta.tables import DeltaMergeBuilder, DeltaTable
from pyspark.sql import DataFrame, DataFrameWriter
from pyspark.sql.classic.dataframe import DataFrame as ClassicDataFrame

from bench.bench_freshness import Watcher
from bench.spark_env import JvmMeter, conf_option, engines, history_and_model
from spark import runtime, status
from spark.jobs import bronze, gold, score, silver

JOBS = (bronze, silver, gold, score)
REPO_DIRS = ("/spark/", "/bench/")
_local = threading.local()


class Steps:
    """Python-side timing of the calls a foreachBatch body makes, per query and batch."""

    def __init__(self) -> None:
        self.by_batch: dict[tuple[str, int], list[tuple[str, float]]] = collections.defaultdict(list)
        self.body: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def record(self, label: str, seconds: float) -> None:
        key = getattr(_local, "batch", None)
        if key is None:
            return
        with self._lock:
            self.by_batch[key].append((label, seconds))


STEPS = Steps()


def call_site() -> str:
    """The first frame in this repository's spark/ code above the patched call: 'module.function:line'."""
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if any(d in path for d in REPO_DIRS) and "bench_batch_profile" not in path:
            module = os.path.splitext(os.path.basename(path))[0]
            return f"{module}.{frame.f_code.co_name}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def timed(owner: Any, name: str, what: str) -> Callable[[], None]:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_local, "batch", None) is None or getattr(_local, "depth", 0):
            return original(*args, **kwargs)
        site = call_site()
        _local.depth = 1  # the outermost patched call only (a MERGE's inner collect is part of it)
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _local.depth = 0
            STEPS.record(f"{site} {what}", time.perf_counter() - t0)

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, original)


def instrument() -> list[Callable[[], None]]:
    undo = [
        # Spark 4's classic (non-Connect) DataFrame holds the actions' implementations
        timed(ClassicDataFrame, "collect", "collect"), timed(ClassicDataFrame, "first", "first"),
        timed(ClassicDataFrame, "count", "count"), timed(ClassicDataFrame, "localCheckpoint", "localCheckpoint"),
        timed(DataFrameWriter, "save", "save"),
        timed(DeltaMergeBuilder, "execute", "MERGE"), timed(DeltaTable, "forPath", "DeltaTable.forPath"),
        timed(DeltaTable, "isDeltaTable", "isDeltaTable"), timed(DeltaTable, "history", "history"),
        timed(status.StatusPublisher, "_send", "status send (Kafka)"),
    ]
    original_gate = runtime.BatchGate.__call__

    def gate(self: runtime.BatchGate, query: str, body: Callable[[DataFrame, int], None]) -> Any:
        def profiled(batch: DataFrame, batch_id: int) -> None:
            _local.batch, _local.depth = (query, batch_id), 0
            t0 = time.perf_counter()
            try:
                body(batch, batch_id)
            finally:
                STEPS.body[(query, batch_id)] = time.perf_counter() - t0
                _local.batch = None

        return original_gate(self, query, profiled)

    runtime.BatchGate.__call__ = gate  # type: ignore[method-assign]
    undo.append(lambda: setattr(runtime.BatchGate, "__call__", original_gate))
    return undo


def spark_jobs(spark: Any) -> list[dict[str, Any]]:
    """Every job in Spark's status store: group, call site, submission and completion (epoch ms)."""
    store = spark.sparkContext._jsc.sc().statusStore()
    jobs = store.jobsList(None)
    out = []
    for i in range(jobs.size()):
        job = jobs.apply(i)
        group, description = job.jobGroup(), job.description()
        sub, done = job.submissionTime(), job.completionTime()
        # Spark names a job by its call site; Delta marks the jobs it runs itself (snapshot, MERGE
        # scans, stats, checkpoints) by prefixing the description with "Delta: ".
        delta = description.isDefined() and str(description.get()).startswith("Delta:")
        name = ("Delta " if delta else "") + str(job.name()).split(" at ")[0]
        out.append({
            "group": group.get() if group.isDefined() else None,
            "name": re.sub(r"\$\d+", "", name)[:70],
            "submitted": sub.get().getTime() if sub.isDefined() else None,
            "completed": done.get().getTime() if done.isDefined() else None,
        })
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(queries: list[Any], spark: Any, warm_batches: dict[str, int]) -> None:
    jobs = spark_jobs(spark)
    duration_keys = ("latestOffset", "getBatch", "queryPlanning", "addBatch", "walCommit", "commitOffsets")
    print("\nper query, medians over its batches with input after the warm-up (seconds):")
    for q in queries:
        busy = [p for p in q.recentProgress if p.get("numInputRows") and p["batchId"] > warm_batches.get(q.name, -1)]
        if not busy:
            print(f"\n{q.name}: no batches with input")
            continue
        d = {k: median([p["durationMs"].get(k, 0) / 1000 for p in busy]) for k in (*duration_keys, "triggerExecution")}
        rows = median([p["numInputRows"] for p in busy])
        print(f"\n{q.name}: {len(busy)} batches, median {rows:g} input rows, triggerExecution p50 "
              f"{d['triggerExecution']:.2f} s (max {max(p['durationMs']['triggerExecution'] for p in busy) / 1000:.2f})")
        print("  progress durationMs: " + "  ".join(f"{k} {d[k]:.2f}" for k in duration_keys))
        bodies = [STEPS.body[(q.name, p["batchId"])] for p in busy if (q.name, p["batchId"]) in STEPS.body]
        print(f"  foreachBatch body (Python, wall): {median(bodies):.2f}")
        steps: dict[str, list[float]] = collections.defaultdict(list)
        for p in busy:
            per: dict[str, float] = collections.defaultdict(float)
            for label, seconds in STEPS.by_batch.get((q.name, p["batchId"]), []):
                per[label] += seconds
            for label, seconds in per.items():
                steps[label].append(seconds)
        for label, values in sorted(steps.items(), key=lambda kv: -median(kv[1])):
            print(f"    {median(values):5.2f}  {label}  (in {len(values)}/{len(busy)} batches)")
        run_id = str(q.runId)
        counts, walls = [], collections.defaultdict(list)
        for p in busy:
            start = _epoch_ms(p["timestamp"])
            end = start + p["durationMs"]["triggerExecution"]
            mine = [j for j in jobs if j["group"] == run_id and j["submitted"] is not None
                    and start <= j["submitted"] <= end]
            counts.append(len(mine))
            per = collections.defaultdict(float)
            for j in mine:
                per[j["name"]] += ((j["completed"] or j["submitted"]) - j["submitted"]) / 1000
            for name, seconds in per.items():
                walls[name].append(seconds)
        print(f"  Spark jobs per batch: p50 {median(counts):g} (min {min(counts)}, max {max(counts)}); by call site "
              "(median wall s, batches):")
        for name, values in sorted(walls.items(), key=lambda kv: -median(kv[1])):
            print(f"    {median(values):5.2f}  {name}  ({len(values)})")


def _epoch_ms(iso: str) -> int:
    import datetime as dt

    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=6)
    parser.add_argument("--trigger", default="1 second")
    parser.add_argument("--timeout", type=float, default=120.0, help="per probe, until it is scored")
    conf_option(parser)
    args = parser.parse_args(argv)
    started = time.monotonic()
    with engines(extra_conf={"spark.ui.retainedJobs": "100000", **dict(args.conf)}) as env:
        live = history_and_model(env, args.trigger).live
        undo = instrument()
        queries = [q for job in JOBS for q in job.start(env.spark, live)]
        watcher = Watcher(env, live)
        try:
            def scored(cid: str) -> float:
                t0 = watcher.produce(cid)
                deadline = t0 + args.timeout
                while time.monotonic() < deadline:
                    for q in queries:
                        if q.exception() is not None:
                            raise RuntimeError(f"{q.name}: {q.exception()}")
                    if cid in watcher.poll_scores(0.2):
                        return time.monotonic() - t0
                raise TimeoutError(f"{cid} not scored within {args.timeout:.0f} s")

            print(f"warm-up probe scored after {scored('profile-warmup'):.1f} s", flush=True)
            time.sleep(2 * 1.5)
            warm = {q.name: (q.lastProgress or {}).get("batchId", -1) for q in queries}
            latencies = []
            meter = JvmMeter(env.spark)
            cpu0, compiles0 = meter.read()
            for i in range(args.probes):
                latencies.append(scored(f"profile-{i:03d}"))
                time.sleep(2.0)  # every query idle again before the next probe
            cpu1, compiles1 = meter.read()
            print(f"produce -> score, one probe at a time: {' '.join(f'{x:.1f}' for x in latencies)} s "
                  f"(p50 {median(latencies):.1f})")
            print(f"per probe (all queries, idle triggers included): JVM CPU {(cpu1 - cpu0) / args.probes:.2f} s, "
                  f"classes compiled by code generation {(compiles1 - compiles0) / args.probes:.0f}"
                  + (f"; with {' '.join(f'{k}={v}' for k, v in args.conf)}" if args.conf else ""))
            print(f"classes compiled by code generation since the session started: {meter.read()[1]}")
            load = os.getloadavg()
            print(f"load average while measured: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
            report(queries, env.spark, warm)
        finally:
            watcher.close()
            for q in queries:
                q.stop()
            for u in undo:
                u()
    print(f"\ntotal {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
