"""Segments on the default seed: the rules on the declared lifecycle stage (before) beside the rules
of ``ksql/segments.yaml`` on what the pipeline knows (the behavioural stage and the propensity score).

    python -m bench.bench_segments [--customers N] [--days D] [--rows test-output/segment-rows.json]

The default seed (1,000 customers, 90 days, seed 42) goes through bronze and silver (batch runs of
the real jobs on a real broker), then every customer is taken as of the seed's cutoff: the gold row
(spark.transforms.features.c360_as_of), the behavioural stage and a propensity score from a model
trained as ``python -m spark.jobs.evaluate`` trains it (history before the cutoff only). Both rule
sets are evaluated with ``operators.ksql.segments.segment_for``, the Python twin of the generated
ksqlDB CASE (a unit test keeps the two equal). Printed, measured in this run:

* the share of the top decile of customers by lifetime value that lands in ``at_risk``;
* per segment: customers, and the share of them who order in the ground truth's label window
  (the simulator's hidden future), beside the base rate (lift = share / base rate).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from collections import defaultdict
from pathlib import Path

import yaml

from operators.ksql import segments

# ksql/segments.yaml before the segments read behaviour (its rules, unchanged): declared stage only.
BEFORE = segments.parse_rules(yaml.safe_load("""
version: 1
default: nurture
rules:
  - {segment: vip_evangelist, lifecycle_stage: evangelist, min_lifetime_value: 1000}
  - {segment: at_risk, lifecycle_stage: churn-risk}
  - {segment: loyal, min_order_count: 5}
  - {segment: loyal, min_lifetime_value: 500}
  - {segment: new_prospect, lifecycle_stage: prospect, max_order_count: 0}
"""))


def customers_as_of_cutoff(customers: int, days: int) -> tuple[list[dict], float]:
    """Per customer: declared stage, lifetime value, orders, behavioural stage, score, label."""
    from seed.simulator import SimConfig, Simulator
    from spark import model as M
    from spark.jobs import bronze, silver, train
    from spark.transforms.features import c360_as_of, features, training_set
    from tests.support import pipeline

    from .spark_env import engines

    with engines() as env:
        started = time.monotonic()
        settings = pipeline.job_settings(env.broker.bootstrap, env.registry.url, str(env.root / "delta"),
                                         pipeline.new_prefix())
        pipeline.create_topics(env.broker, settings)
        config = SimConfig(customers=customers, days=days)
        sim = Simulator(config)
        pipeline.produce(env.broker, settings, ((e.topic, e.key, e.record) for e in sim.events()))
        for job in (bronze, silver):
            pipeline.run(job, env.spark, settings)
        cust, orders, acts = train.silver(env.spark, settings)
        cutoff = dt.datetime.fromtimestamp(config.cutoff_ms / 1000, dt.UTC).replace(tzinfo=None)
        fitted = M.fit(training_set(cust, orders, acts, cutoff, config.label_window_days))
        keep = ["lifecycle_stage", "lifetime_value", "orders"]  # (features() turns order_count into a double)
        rows = c360_as_of(cust, orders, acts, cutoff)
        scored = M.score(fitted, features(rows.withColumn("orders", rows["order_count"]), keep), keep)
        found = {r.customer_id: r for r in scored.collect()}
        labels = {t["customer_id"]: int(t["label"]) for t in sim.ground_truth()}
        print(f"seed {customers} customers x {days} days through bronze and silver, model trained, "
              f"{len(found)} customers scored as of the cutoff in {time.monotonic() - started:.0f} s")
    out = [{"customer_id": cid, "lifecycle_stage": r.lifecycle_stage, "lifetime_value": float(r.lifetime_value or 0),
            "order_count": int(r.orders or 0), "behavioural_stage": r.behavioural_stage,
            "score": float(r.score), "label": labels[cid]} for cid, r in found.items() if cid in labels]
    return out, sum(c["label"] for c in out) / len(out)


def report(rows: list[dict], base_rate: float) -> list[str]:
    after = segments.load_rules("ksql")
    for c in rows:
        c["before"] = segments.segment_for(BEFORE, c["lifecycle_stage"], c["lifetime_value"], c["order_count"])
        c["after"] = segments.segment_for(after, c["lifecycle_stage"], c["lifetime_value"], c["order_count"],
                                          c["behavioural_stage"], c["score"])
    top = sorted(rows, key=lambda c: c["lifetime_value"], reverse=True)[: max(1, len(rows) // 10)]
    lines = [f"customers {len(rows)}, base rate (orders in the label window) {base_rate:.1%}",
             f"top decile by lifetime value ({len(top)} customers, lifetime value >= {top[-1]['lifetime_value']:.2f}) "
             f"in at_risk: before {sum(c['before'] == 'at_risk' for c in top) / len(top):.1%}, "
             f"after {sum(c['after'] == 'at_risk' for c in top) / len(top):.1%}",
             f"{'segment':15} {'before: customers':>18} {'orders':>7} {'lift':>5}   "
             f"{'after: customers':>17} {'orders':>7} {'lift':>5}"]
    names = list(dict.fromkeys([*BEFORE.segments, *after.segments]))
    for name in names:
        cells = []
        for side in ("before", "after"):
            members = [c for c in rows if c[side] == name]
            share = sum(c["label"] for c in members) / len(members) if members else float("nan")
            cells.append(f"{len(members):>18} {share:>7.1%} {share / base_rate:>5.2f}" if members
                         else f"{0:>18} {'-':>7} {'-':>5}")
        lines.append(f"{name:15} {cells[0]}   {cells[1]}")
    moved = defaultdict(int)
    for c in rows:
        if c["before"] != c["after"]:
            moved[(c["before"], c["after"])] += 1
    lines.append("moved: " + ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(moved.items(), key=lambda x: -x[1])))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_segments", description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=1000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--rows", metavar="JSON", help="reuse (or, when missing, write) the per-customer rows of "
                    "an earlier run: another rule set is then evaluated without Spark")
    args = ap.parse_args(argv)
    saved = Path(args.rows) if args.rows else None
    if saved is not None and saved.exists():
        rows = json.loads(saved.read_text())
        base_rate = sum(c["label"] for c in rows) / len(rows)
        print(f"{len(rows)} customers read from {saved}")
    else:
        rows, base_rate = customers_as_of_cutoff(args.customers, args.days)
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(rows))
    print("\n".join(report(rows, base_rate)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
