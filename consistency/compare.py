"""The comparison, pure: the two sides' latest record per customer in, the report out.

A side's record carries the metrics and the time it was written (the Kafka record timestamp: when
ksqlDB's view, or the score job publishing gold's rows, last changed the customer). A customer whose
metrics differ is *catching up*, not disagreeing, while one side may simply not have processed the
customer's latest event yet:

* the difference is younger than ``settle_ms`` (the newer side's change is that recent), or
* the view changed after gold's horizon, the last commit of the Spark jobs between them (a stopped or
  lagging gold or score job: it cannot have seen the change, however old).

Anything else is a disagreement: both sides had the time and the chance and still differ.

A forgotten customer (an erasure request on dom.customer.erasure.v1) is not compared at all, only
counted: the Delta erasure deletes its gold row while ksqlDB keeps its aggregates (a source tombstone
does not reach them, confluentinc/ksql#6938), so the two sides differ by design (docs/forget.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas import probes

# The metrics both sides compute, by their one name (ksql/050-consolidated.sql, spark/transforms/gold.py).
# Not compared: the profile's fields (each side keeps its latest profile by its own order: by offset in
# ksqlDB, by event time in gold, which differ for a late profile update; docs/consistency.md) and
# activations_bounced (gold counts it inside activations_failed only).
METRICS = ("order_count", "lifetime_value", "last_order_at", "activations_delivered", "activations_failed",
           "last_engagement_at")
CENTS = 0.005  # lifetime values are sums of prices: equal when they round to the same cent


@dataclass(frozen=True)
class Side:
    """One side's latest record of a customer: the metrics, and when the side wrote it (epoch ms)."""

    metrics: Mapping[str, Any]
    written_ms: int


@dataclass(frozen=True)
class Difference:
    customer_id: str
    metric: str
    view: str | None
    gold: str | None


@dataclass
class Report:
    checked_at_ms: int
    settle_ms: int
    customers: int = 0
    agreeing: int = 0
    disagreeing: int = 0
    catching_up: int = 0
    forgotten: int = 0  # erased customers either side still holds, left out (not in ``customers``)
    examples: list[Difference] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return self.agreeing + self.disagreeing

    def record(self) -> dict[str, Any]:
        """The report as its contract (schemas/avro/consistency_report.avsc) says."""
        return {
            "checked_at": self.checked_at_ms, "customers": self.customers, "checked": self.checked,
            "agreeing": self.agreeing, "disagreeing": self.disagreeing, "catching_up": self.catching_up,
            "metrics": list(METRICS), "settle_ms": self.settle_ms, "forgotten": self.forgotten,
            "examples": [{"customer_id": d.customer_id, "metric": d.metric, "view": d.view, "gold": d.gold}
                         for d in self.examples],
        }

    def line(self) -> str:
        out = (f"consistency: {self.customers} customers, {self.checked} checked: {self.agreeing} agree, "
               f"{self.disagreeing} disagree; {self.catching_up} catching up; {self.forgotten} forgotten")
        if self.examples:
            out += "; e.g. " + ", ".join(f"{d.customer_id} {d.metric} view={d.view} gold={d.gold}"
                                         for d in self.examples[:3])
        return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def differences(customer_id: str, view: Mapping[str, Any], gold: Mapping[str, Any]) -> list[Difference]:
    out = []
    for metric in METRICS:
        a, b = view.get(metric), gold.get(metric)
        if metric == "lifetime_value" and a is not None and b is not None:
            same = abs(float(a) - float(b)) <= CENTS
        else:
            same = a == b
        if not same:
            out.append(Difference(customer_id, metric, _text(a), _text(b)))
    return out


def compare(view: Mapping[str, Side], gold: Mapping[str, Side], *, now_ms: int, gold_horizon_ms: int | None,
            settle_ms: int, examples: int = 5, erased: Collection[str] = ()) -> Report:
    """``gold_horizon_ms``: the newest time by which gold's side is complete for every change the view
    made before it (the older of the gold and score jobs' newest commits; None: they never committed).
    ``erased``: the customers an erasure was requested for, counted as forgotten, never compared."""
    report = Report(now_ms, settle_ms)
    found: list[Difference] = []
    for customer_id in sorted(set(view) | set(gold)):
        if probes.is_probe(customer_id):  # make verify's probes never count as customers
            continue
        if customer_id in erased:
            report.forgotten += 1
            continue
        report.customers += 1
        v, g = view.get(customer_id), gold.get(customer_id)
        if v is not None and g is not None:
            diff = differences(customer_id, v.metrics, g.metrics)
        else:
            diff = [Difference(customer_id, "customer", "present" if v else None, "present" if g else None)]
        if not diff:
            report.agreeing += 1
            continue
        newest = max(s.written_ms for s in (v, g) if s is not None)
        gold_cannot_know = v is not None and (gold_horizon_ms is None or v.written_ms > gold_horizon_ms)
        if now_ms - newest < settle_ms or gold_cannot_know:
            report.catching_up += 1
            continue
        report.disagreeing += 1
        if len(found) < examples:
            found.append(diff[0])
    report.examples = found
    return report
