"""Freshness: time from producing an event to its gold/c360 row and to its propensity score record,
with all four streaming jobs running at once on a 1 s trigger, in two modes measured in ONE run:

  * one-session: the four jobs' queries in one local[2] session in this process (3g driver heap);
  * four-process: the four jobs as four separate driver-only processes (`python -m spark.jobs.<job>`),
    as the cluster runs them (pipeline.driverOnly: one JVM per job on the chart's local master, with
    the chart's driver heap, JVM options and MALLOC_ARENA_MAX from charts/marketing-engine/values.yaml),
    resuming from the checkpoints the first mode left.

A small simulated history is loaded and a model trained first; then, per mode, a warm-up probe is
waited for (not counted: the first micro-batches after a start), and probe customers (a profile and an
order each, event time = now) are produced one every --interval seconds and watched for in gold (Delta
reads from this process's session, every 2 s, the same in both modes) and on the score topic (a
consumer). Prints p50 / p95 of both for both modes and the four-process / one-session ratios.
Run: python -m bench.bench_freshness [--probes 10] [--interval 2] [--modes one-session,four-process]
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from confluent_kafka import Consumer
from pyspark.sql import functions as F

from bench.spark_env import conf_option, engines, history_and_model, percentile
from schemas import serde, topics
from spark.jobs import bronze, gold, score, silver
from tests.support import pipeline
from tests.support.paths import REPO, SPARK_JARS

JOBS = (bronze, silver, gold, score)
MODES = ("one-session", "four-process")


def probe_events(cid: str, now_ms: int) -> list:
    profile = {"customer_id": cid, "email": f"{cid}@example.com", "first_name": "Probe", "last_name": cid,
               "created_at": now_ms, "updated_at": now_ms, "lifecycle_stage": "prospect", "is_active": True,
               "phone": None}
    order = {"order_id": f"{cid}-o", "customer_id": cid, "order_total": 42.0,
             "items": [{"sku": "SKU-1", "quantity": 1, "price": 42.0}], "currency": "EUR", "channel": "web",
             "placed_at": now_ms}
    return [(topics.CUSTOMER_PROFILE, cid, profile), (topics.ORDER_PLACED, cid, order)]


@dataclass
class Result:
    mode: str
    produced: dict[str, float] = field(default_factory=dict)
    to_gold: dict[str, float] = field(default_factory=dict)
    to_score: dict[str, float] = field(default_factory=dict)
    warmup_s: float = float("nan")
    batches: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""

    ended: float = 0.0  # monotonic time the mode stopped watching

    def p(self, which: str, q: float) -> tuple[float, bool]:
        """The q-th percentile over EVERY probe produced; a probe that never arrived counts as the time it
        waited (a lower bound), and the percentile is then flagged as one (True)."""
        arrived = getattr(self, which)
        values = sorted([(v, False) for v in arrived.values()]
                        + [(self.ended - t, True) for c, t in self.produced.items() if c not in arrived])
        if not values:
            return float("nan"), False
        k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
        # a missing probe at or below rank k may really be later than values[k]: a lower bound then
        return values[k][0], any(low for _, low in values[:k + 1])


def fmt(value: tuple[float, bool]) -> str:
    return f"{'>' if value[1] else ''}{value[0]:.1f}"


class Watcher:
    """Produces probes and sees them arrive: on the score topic (a consumer) and in gold/c360 (Delta)."""

    def __init__(self, env, live) -> None:  # noqa: ANN001 - bench_spark env, JobSettings
        self.env, self.live = env, live
        score_topic = live.topic(topics.PROPENSITY_SCORE)
        self.codec = serde.TopicSerde(serde.registry_client(live.schema_registry_url), score_topic)
        self.consumer = Consumer({"bootstrap.servers": env.broker.bootstrap,
                                  "group.id": f"freshness-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "latest"})
        self.consumer.subscribe([score_topic.name])
        deadline = time.monotonic() + 30
        while not self.consumer.assignment() and time.monotonic() < deadline:
            self.consumer.poll(0.5)  # join the group before the probes start
        self.c360 = live.table("gold", "c360")

    def produce(self, cid: str) -> float:
        pipeline.produce(self.env.broker, self.live, probe_events(cid, int(time.time() * 1000)))
        return time.monotonic()

    def poll_scores(self, timeout: float) -> list[str]:
        msg = self.consumer.poll(timeout)
        if msg is None or msg.error():
            return []
        return [self.codec.deserialize(msg.value())["customer_id"]]

    def in_gold(self, waiting: list[str]) -> list[str]:
        rows = (self.env.spark.read.format("delta").load(self.c360)
                .where(F.col("customer_id").isin(waiting) & (F.col("order_count") > 0))
                .select("customer_id").collect())
        return [row.customer_id for row in rows]

    def close(self) -> None:
        self.consumer.close()


def measure(watcher: Watcher, result: Result, args: argparse.Namespace, alive) -> None:  # noqa: ANN001
    """Warm-up probe (until it is scored), then --probes probes; fills ``result``."""
    tag = "one" if result.mode == "one-session" else "four"
    warm = f"warmup-{tag}"
    t0 = watcher.produce(warm)
    deadline = t0 + args.startup_timeout
    while time.monotonic() < deadline:
        alive()
        if warm in watcher.poll_scores(0.5):
            result.warmup_s = time.monotonic() - t0
            break
    else:
        result.note = f"warm-up probe not scored within {args.startup_timeout:.0f} s"
        return
    next_probe, i, next_look = time.monotonic(), 0, 0.0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and (i < args.probes or len(result.to_score) < args.probes
                                           or len(result.to_gold) < args.probes):
        now = time.monotonic()
        if i < args.probes and now >= next_probe:
            cid = f"probe-{tag}-{i:03d}"
            result.produced[cid] = watcher.produce(cid)
            i, next_probe = i + 1, now + args.interval
        for cid in watcher.poll_scores(0.2):
            if cid in result.produced and cid not in result.to_score:
                result.to_score[cid] = time.monotonic() - result.produced[cid]
        waiting = [c for c in result.produced if c not in result.to_gold]
        # Gold is looked at every 2 s: the reads share the two cores with the jobs measured.
        if waiting and time.monotonic() >= next_look:
            next_look = time.monotonic() + 2.0
            found = watcher.in_gold(waiting)
            seen = time.monotonic()
            for cid in found:
                result.to_gold[cid] = seen - result.produced[cid]
        alive()
    result.ended = time.monotonic()


def one_session(env, live, args: argparse.Namespace) -> Result:  # noqa: ANN001
    result = Result("one-session")
    queries = [q for job in JOBS for q in job.start(env.spark, live)]
    watcher = Watcher(env, live)

    def alive() -> None:
        for q in queries:
            if q.exception() is not None:
                raise RuntimeError(f"{q.name}: {q.exception()}")

    try:
        measure(watcher, result, args, alive)
    finally:
        watcher.close()
        result.batches = {q.name: busy_batches(q) for q in queries}
        for q in queries:
            q.stop()
    return result


def chart_driver(java_options: str | None = None) -> dict[str, str]:
    """The laptop profile of the chart's drivers: local master, heap, JVM options (``java_options``
    replaces the chart's, to measure another choice), MALLOC_ARENA_MAX."""
    p = yaml.safe_load((REPO / "charts" / "marketing-engine" / "values.yaml").read_text())["pipeline"]
    return {"master": p["driverOnly"]["master"], "heap": p["driver"]["memory"],
            "java_options": p["driver"]["javaOptions"] if java_options is None else java_options,
            "malloc_arena_max": str(p["mallocArenaMax"] or "")}


def four_processes(env, live, args: argparse.Namespace) -> Result:  # noqa: ANN001
    from tests.support.procs import ServerProcess

    result = Result("four-process")
    driver = chart_driver(args.java_options)
    submit = ["--driver-memory", driver["heap"], "--driver-java-options", driver["java_options"],
              # what the chart sets in every application's sparkConf
              "--conf", "spark.sql.session.timeZone=UTC", "--conf", "spark.ui.showConsoleProgress=false",
              "pyspark-shell"]
    common = {
        "PYTHONPATH": str(REPO), "KAFKA_BOOTSTRAP_SERVERS": env.broker.bootstrap,
        "SCHEMA_REGISTRY_URL": live.schema_registry_url, "DELTA_ROOT": live.delta_root,
        "TOPIC_PREFIX": live.topic_prefix, "TRIGGER_INTERVAL": args.trigger, "STARTING_OFFSETS": "earliest",
        "MAX_OFFSETS_PER_TRIGGER": "50000", "SPARK_MASTER": driver["master"], "SPARK_JARS_DIR": str(SPARK_JARS),
        "PYSPARK_PYTHON": sys.executable, "PYSPARK_SUBMIT_ARGS": shlex.join(submit), "LOG_LEVEL": "WARNING",
        "STARTUP_WAIT_S": "60",
    }
    if driver["malloc_arena_max"]:
        common["MALLOC_ARENA_MAX"] = driver["malloc_arena_max"]
    logs = Path(env.root) / "logs"
    logs.mkdir(exist_ok=True)
    procs = []
    watcher = None
    try:
        for job in JOBS:
            name = job.__name__.rsplit(".", 1)[1]
            procs.append(ServerProcess(f"spark-{name}", [sys.executable, "-m", f"spark.jobs.{name}"],
                                       logs / f"{name}.log", env=common, cwd=REPO))
        watcher = Watcher(env, live)

        def alive() -> None:
            for proc in procs:
                if proc.proc.poll() is not None:
                    raise RuntimeError(f"{proc.name} exited {proc.proc.returncode}:\n{proc.log_tail()}")

        measure(watcher, result, args, alive)
    finally:
        if watcher is not None:
            watcher.close()
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.stop(grace=30)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="per mode, after the warm-up")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="per mode, for the warm-up probe")
    parser.add_argument("--trigger", default="1 second")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--java-options", help="the four-process drivers' JVM options (default: the chart's)")
    conf_option(parser)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"--modes: unknown {', '.join(sorted(unknown))} (one of {', '.join(MODES)})")
    started = time.monotonic()
    results: list[Result] = []
    with engines(extra_conf=dict(args.conf)) as env:  # the one-session mode's session
        live = history_and_model(env, args.trigger).live
        for mode in modes:
            t0 = time.monotonic()
            try:
                result = (one_session if mode == "one-session" else four_processes)(env, live, args)
            except Exception as exc:  # one mode failing must not lose the other's figures
                result = Result(mode, note=f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            results.append(result)
            print(f"- {mode}: {time.monotonic() - t0:.0f} s (warm-up probe scored after {result.warmup_s:.0f} s)"
                  f"{'; ' + result.note if result.note else ''}", flush=True)
    report(results, args)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


def report(results: list[Result], args: argparse.Namespace) -> None:
    driver = chart_driver(args.java_options)
    print(f"\nfreshness, {args.trigger} trigger, 4 streaming jobs, {args.probes} probes every {args.interval:g} s "
          f"per mode, same run, same machine:")
    print("  one-session:  the 4 jobs in one local[2] session in this process (3g heap)")
    print(f"  four-process: 4 driver-only processes, {driver['master']}, heap {driver['heap']}, "
          f"{driver['java_options']}, MALLOC_ARENA_MAX={driver['malloc_arena_max'] or '(default)'}")
    print(f"  {'mode':14} {'path':16} {'p50 s':>7} {'p95 s':>7}  arrived")
    for r in results:
        for label, which in (("produce -> gold", "to_gold"), ("produce -> score", "to_score")):
            values = getattr(r, which)
            print(f"  {r.mode:14} {label:16} {fmt(r.p(which, 50)):>7} {fmt(r.p(which, 95)):>7}  "
                  f"{len(values)}/{len(r.produced)}")
    by = {r.mode: r for r in results}
    if len(by) == 2:
        a, b = by["one-session"], by["four-process"]
        for label, which in (("produce -> gold", "to_gold"), ("produce -> score", "to_score")):
            ratios = []
            for q in (50, 95):
                (x, x_low), (y, y_low) = b.p(which, q), a.p(which, q)
                # a lower bound over an exact figure is a lower bound of the ratio; over a lower bound, unknown
                ratios.append("?" if y_low else f"{'>=' if x_low else ''}x{x / y:.2f}" if y else "nan")
            print(f"  four-process / one-session, {label:16}: p50 {ratios[0]}, p95 {ratios[1]}")
    print("  (>: some probes had not arrived when the mode's --timeout ended; they count as the time they waited)")
    for r in results:
        if r.batches:
            print(f"  {r.mode}: micro-batches that had input, per query (recent progress):")
            for name, seconds in r.batches.items():
                print(f"    {name:22} {len(seconds):3} batches   p50 {percentile(seconds, 50):5.1f} s   "
                      f"max {max(seconds, default=0):5.1f} s")


def busy_batches(query) -> list[float]:  # noqa: ANN001 - StreamingQuery
    """Durations of the query's recent micro-batches that processed rows (idle polls left out)."""
    return [p["durationMs"]["triggerExecution"] / 1000 for p in query.recentProgress if p.get("numInputRows")]


if __name__ == "__main__":
    sys.exit(main())
