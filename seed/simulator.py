"""Behavioural customer simulator: a pure, deterministic generator of ``(topic, key, record)`` events.

Every customer has hidden traits, drawn once:

* ``purchase_propensity`` in [0, 1] (Beta(1.3, 4)): base order rate = ``ORDER_RATE_MAX`` x propensity
  orders per day;
* ``engagement_affinity`` in [0, 1] (Beta(2, 2)): how often campaigns reach the customer
  (``0.08 + 0.12 x affinity`` activations per day), how likely they are delivered
  (``0.5 + 0.45 x affinity``; the rest bounce or fail), and a delivered campaign activation doubles
  the order rate for ``BOOST_DAYS``;
* ``price_level`` (log-normal around 1): dearer products in the orders;
* ``churn_hazard`` per day (Beta(1, 250)): the customer churns at signup + Exp(hazard); after that
  the order rate drops to 5 %, and with probability 0.4 the profile is deactivated some days later
  (no campaigns or orders after a deactivation).

Half the customers sign up during the first simulated day (the existing base), the rest uniformly
over the simulated period. Profiles are created with a declared ``lifecycle_stage`` drawn at random
(as the original design note does: it does NOT follow the traits) and are edited now and then
(phone, email, last name). Each order is followed by a transactional email activation that carries
its order_id.

Time: a simulated clock in epoch millis from ``start_ms`` for ``days`` days (the scoring cutoff),
never the wall clock. Events are emitted in event-time order, except

* late events: a share ``late_share`` of the records is held back for up to ``late_max_ms``, so
  they arrive after records of other customers with later event times. A customer's records stay
  in event-time order (records following a held-back record of the same customer wait behind it),
  so event time is monotone per customer and per key;
* duplicates: a share ``duplicate_share`` of the orders is re-sent (the identical record, same
  order_id) a little later.

Ground truth: the simulation runs on, unpublished, for ``label_window_days`` after the cutoff;
``label`` is 1 when the customer placed at least one order in ``[cutoff, cutoff + window)``.
:func:`write_ground_truth` writes it as CSV with a sidecar JSON describing cutoff, window and columns.

Everything random comes from one ``random.Random(seed)``; ids are UUIDs drawn from it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import heapq
import json
import math
import os
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from schemas.topics import ACTIVATION_STATUS, CUSTOMER_PROFILE, ORDER_PLACED, Topic
from seed import events

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

ORDER_RATE_MAX = 0.15  # orders/day at propensity 1, before the engagement boost
ENGAGEMENT_BOOST = 1.0  # + 100 % order rate ...
BOOST_DAYS = 3.0  # ... for this long after a delivered campaign activation
CHURNED_RATE_FACTOR = 0.05
DEACTIVATE_AFTER_CHURN = 0.4
EDIT_RATE = 0.01  # profile edits/day
EXISTING_BASE_SHARE = 0.5

# Heap event kinds
_SIGNUP, _ORDER, _CAMPAIGN, _CONFIRM, _EDIT, _DEACTIVATE = range(6)


class Event(NamedTuple):
    topic: Topic
    key: str  # customer_id
    record: dict[str, Any]  # value conforming to topic's Avro schema


@dataclasses.dataclass(frozen=True)
class SimConfig:
    customers: int = 1000
    days: int = 90
    seed: int = 42
    start_ms: int = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    late_share: float = 0.02
    late_max_ms: int = 6 * HOUR_MS
    duplicate_share: float = 0.01
    label_window_days: int = 14

    def __post_init__(self) -> None:
        if self.customers < 1 or self.days < 1 or self.label_window_days < 1:
            raise ValueError("customers, days and label_window_days must be >= 1")
        if not (0 <= self.late_share <= 1 and 0 <= self.duplicate_share <= 1):
            raise ValueError("late_share and duplicate_share must be between 0 and 1")
        if self.late_max_ms < 1000:
            raise ValueError("late_max_ms must be >= 1000")

    @classmethod
    def from_settings(cls, settings: Any) -> SimConfig:
        """From a ``seed.settings.SeedSettings``."""
        return cls(
            customers=settings.customers, days=settings.days, seed=settings.seed, start_ms=settings.start_ms,
            late_share=settings.late_share, late_max_ms=int(settings.late_max_minutes * MINUTE_MS),
            duplicate_share=settings.duplicate_share, label_window_days=settings.label_window_days,
        )

    @property
    def cutoff_ms(self) -> int:
        """End of the published period and start of the label window."""
        return self.start_ms + self.days * DAY_MS

    @property
    def horizon_ms(self) -> int:
        return self.cutoff_ms + self.label_window_days * DAY_MS


class _Customer:
    __slots__ = (
        "index", "signup_ms", "propensity", "affinity", "price_level", "churn_hazard", "churn_ms",
        "order_rate", "profile", "customer_id", "boost_until", "deactivated_ms", "release_floor",
        "orders_before", "spend_before", "orders_window", "activations_before", "delivered_before",
    )

    def __init__(self, index: int, rng: random.Random, cfg: SimConfig):
        self.index = index
        if rng.random() < EXISTING_BASE_SHARE:
            self.signup_ms = cfg.start_ms + int(rng.random() * DAY_MS)
        else:
            self.signup_ms = cfg.start_ms + int(rng.random() * (cfg.cutoff_ms - cfg.start_ms))
        self.propensity = rng.betavariate(1.3, 4.0)
        self.affinity = rng.betavariate(2.0, 2.0)
        self.price_level = min(2.5, max(0.4, rng.lognormvariate(0.0, 0.35)))
        self.churn_hazard = rng.betavariate(1.0, 250.0)
        self.churn_ms = self.signup_ms + int(rng.expovariate(self.churn_hazard) * DAY_MS)
        self.order_rate = ORDER_RATE_MAX * self.propensity
        self.profile: dict[str, Any] = {}
        self.customer_id = ""
        self.boost_until = 0
        self.deactivated_ms: int | None = None
        self.release_floor = 0
        self.orders_before = 0
        self.spend_before = 0.0
        self.orders_window = 0
        self.activations_before = 0
        self.delivered_before = 0

    def rate_at(self, t: int) -> float:
        if t >= self.churn_ms:
            return self.order_rate * CHURNED_RATE_FACTOR
        return self.order_rate * (1.0 + ENGAGEMENT_BOOST if t < self.boost_until else 1.0)

    def truth(self, cfg: SimConfig) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "declared_lifecycle_stage": self.profile.get("lifecycle_stage", ""),
            "signup_at_ms": self.signup_ms,
            "purchase_propensity": round(self.propensity, 6),
            "base_order_rate_per_day": round(self.order_rate, 6),
            "engagement_affinity": round(self.affinity, 6),
            "price_level": round(self.price_level, 6),
            "churn_hazard_per_day": round(self.churn_hazard, 6),
            "churned_at_ms": self.churn_ms if self.churn_ms < cfg.horizon_ms else "",
            "churned_before_cutoff": int(self.churn_ms < cfg.cutoff_ms),
            "deactivated_at_ms": self.deactivated_ms if self.deactivated_ms is not None else "",
            "orders_before_cutoff": self.orders_before,
            "spend_before_cutoff": round(self.spend_before, 2),
            "activations_before_cutoff": self.activations_before,
            "delivered_before_cutoff": self.delivered_before,
            "orders_in_window": self.orders_window,
            "label": int(self.orders_window > 0),
        }


GROUND_TRUTH_COLUMNS: tuple[str, ...] = (
    "customer_id", "declared_lifecycle_stage", "signup_at_ms", "purchase_propensity",
    "base_order_rate_per_day",
    "engagement_affinity", "price_level", "churn_hazard_per_day", "churned_at_ms", "churned_before_cutoff",
    "deactivated_at_ms", "orders_before_cutoff", "spend_before_cutoff", "activations_before_cutoff",
    "delivered_before_cutoff", "orders_in_window", "label",
)


class Simulator:
    """``events()`` yields the stream; after it is exhausted, ``ground_truth()`` and ``stats`` are set.

    Calling ``events()`` again replays the identical stream (fresh state from the seed).
    """

    def __init__(self, config: SimConfig):
        self.config = config
        self.clock_ms = config.start_ms  # simulated time of the last processed event (for progress)
        self.stats: Counter[str] = Counter()
        self._truth: list[dict[str, Any]] | None = None

    @property
    def progress(self) -> float:
        """Fraction of the published period simulated so far (0..1)."""
        span = self.config.cutoff_ms - self.config.start_ms
        return min(1.0, max(0.0, (self.clock_ms - self.config.start_ms) / span))

    @property
    def finished(self) -> bool:
        """True once ``events()`` has been exhausted (ground truth and stats are complete)."""
        return self._truth is not None

    def ground_truth(self) -> list[dict[str, Any]]:
        if self._truth is None:
            raise RuntimeError("ground truth is known once events() has been exhausted")
        return self._truth

    def events(self) -> Iterator[Event]:
        cfg = self.config
        rng = random.Random(cfg.seed)
        self._truth = None
        self.stats = Counter()
        stats = self.stats
        customers = [_Customer(i, rng, cfg) for i in range(cfg.customers)]
        cutoff, horizon = cfg.cutoff_ms, cfg.horizon_ms
        heap: list[tuple[int, int, int, int, Any]] = []
        seq = 0

        def schedule(t: int, c: _Customer, kind: int, payload: Any = None) -> None:
            nonlocal seq
            if t < horizon:
                seq += 1
                heapq.heappush(heap, (t, seq, c.index, kind, payload))

        for c in customers:
            schedule(c.signup_ms, c, _SIGNUP)

        # Held-back records: (release time, seq, event)
        pending: list[tuple[int, int, Event]] = []

        late_share, duplicate_share = cfg.late_share, cfg.duplicate_share

        def route(t: int, c: _Customer, event: Event, *, duplicate_of_order: bool = False) -> Event | None:
            """The event to emit now, or None when held back (a late record, or behind a held-back record
            of the same customer). A duplicate of an order is held back to be re-sent a little later."""
            nonlocal seq
            stats[event.topic.name] += 1
            emit: Event | None = None
            if c.release_floor > t:
                seq += 1
                heapq.heappush(pending, (c.release_floor, seq, event))
            elif late_share and rng.random() < late_share:
                release = t + rng.randint(MINUTE_MS, cfg.late_max_ms)
                c.release_floor = release
                seq += 1
                heapq.heappush(pending, (release, seq, event))
                stats["late"] += 1
            else:
                emit = event
            if duplicate_of_order and duplicate_share and rng.random() < duplicate_share:
                release = max(t, c.release_floor) + rng.randint(1000, 30 * MINUTE_MS)
                c.release_floor = release
                record = dict(event.record)
                record["items"] = [dict(i) for i in record["items"]]
                seq += 1
                heapq.heappush(pending, (release, seq, Event(event.topic, event.key, record)))
                stats["duplicates"] += 1
                stats[event.topic.name] += 1
            return emit

        def order_candidate(t: int, c: _Customer) -> None:
            ceiling = c.order_rate * (1.0 + ENGAGEMENT_BOOST)
            schedule(t + max(1, int(rng.expovariate(ceiling) * DAY_MS)), c, _ORDER)

        while heap:
            t, _, index, kind, payload = heapq.heappop(heap)
            self.clock_ms = t
            while pending and pending[0][0] <= t:
                yield heapq.heappop(pending)[2]
            c = customers[index]
            published = t < cutoff
            if c.deactivated_ms is not None and kind != _SIGNUP:
                continue  # a deactivated customer neither orders nor gets campaigns
            if kind == _SIGNUP:
                c.profile = events.new_profile(rng, t)
                c.customer_id = c.profile["customer_id"]
                if ev := route(t, c, Event(CUSTOMER_PROFILE, c.customer_id, c.profile)):
                    yield ev
                order_candidate(t, c)
                schedule(t + int(rng.expovariate(0.08 + 0.12 * c.affinity) * DAY_MS), c, _CAMPAIGN)
                schedule(t + int(rng.expovariate(EDIT_RATE) * DAY_MS), c, _EDIT)
                if rng.random() < DEACTIVATE_AFTER_CHURN:
                    schedule(c.churn_ms + int(rng.expovariate(1 / 7) * DAY_MS), c, _DEACTIVATE)
            elif kind == _ORDER:
                ceiling = c.order_rate * (1.0 + ENGAGEMENT_BOOST)
                if rng.random() * ceiling < c.rate_at(t):  # thinning: accept at the current rate
                    if published:
                        items = events.random_items(rng, c.price_level)
                        order = events.new_order(rng, c.customer_id, t, items=items)
                        c.orders_before += 1
                        c.spend_before += order["order_total"]
                        event = Event(ORDER_PLACED, c.customer_id, order)
                        if ev := route(t, c, event, duplicate_of_order=True):
                            yield ev
                        schedule(t + rng.randint(MINUTE_MS, 10 * MINUTE_MS), c, _CONFIRM, order["order_id"])
                    else:
                        c.orders_window += 1
                order_candidate(t, c)
            elif kind in (_CAMPAIGN, _CONFIRM):
                delivered = rng.random() < 0.5 + 0.45 * c.affinity
                if delivered:
                    status = "delivered"
                else:
                    status = "bounced" if rng.random() < 0.5 * (1.0 - c.affinity) else "failed"
                if kind == _CAMPAIGN:
                    if delivered:
                        c.boost_until = max(c.boost_until, t + int(BOOST_DAYS * DAY_MS))
                    rate = 0.08 + 0.12 * c.affinity
                    schedule(t + max(1, int(rng.expovariate(rate) * DAY_MS)), c, _CAMPAIGN)
                if published:
                    channel = "email" if kind == _CONFIRM else None
                    activation = events.new_activation(rng, c.customer_id, t, channel=channel, status=status,
                                                       order_id=payload)
                    c.activations_before += 1
                    c.delivered_before += delivered
                    if ev := route(t, c, Event(ACTIVATION_STATUS, c.customer_id, activation)):
                        yield ev
            elif kind == _EDIT:
                if published:
                    c.profile = events.edit_profile(rng, c.profile, t)
                    if ev := route(t, c, Event(CUSTOMER_PROFILE, c.customer_id, c.profile)):
                        yield ev
                    schedule(t + max(1, int(rng.expovariate(EDIT_RATE) * DAY_MS)), c, _EDIT)
            elif kind == _DEACTIVATE:
                c.deactivated_ms = t
                if published:
                    c.profile = events.edit_profile(rng, c.profile, t, deactivate=True)
                    if ev := route(t, c, Event(CUSTOMER_PROFILE, c.customer_id, c.profile)):
                        yield ev
        while pending:
            yield heapq.heappop(pending)[2]
        self.clock_ms = cutoff
        self._truth = [c.truth(cfg) for c in customers]


def simulate(config: SimConfig) -> Iterator[Event]:
    """The event stream of ``config`` (convenience for tests and Spark fixtures)."""
    return Simulator(config).events()


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(p.stem + ".meta.json")


def ground_truth_meta(config: SimConfig) -> dict[str, Any]:
    def iso(ms: int) -> str:
        return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")

    return {
        "description": "Hidden traits and future-window label per simulated customer (seed/simulator.py).",
        "seed": config.seed,
        "customers": config.customers,
        "simulated_days": config.days,
        "start_ms": config.start_ms,
        "start": iso(config.start_ms),
        "cutoff_ms": config.cutoff_ms,
        "cutoff": iso(config.cutoff_ms),
        "label_window_days": config.label_window_days,
        "label_window_end_ms": config.horizon_ms,
        "label": "1 if the customer placed >= 1 order in [cutoff, cutoff + label_window_days); "
                 "events after the cutoff are simulated but never published",
        "late_share": config.late_share,
        "late_max_ms": config.late_max_ms,
        "duplicate_share": config.duplicate_share,
        "model": {
            "order_rate_per_day": f"{ORDER_RATE_MAX} * purchase_propensity, x{1 + ENGAGEMENT_BOOST} for "
                                  f"{BOOST_DAYS} days after a delivered campaign activation, "
                                  f"x{CHURNED_RATE_FACTOR} after churn",
            "campaigns_per_day": "0.08 + 0.12 * engagement_affinity",
            "p_delivered": "0.5 + 0.45 * engagement_affinity",
            "churn": "at signup + Exp(churn_hazard_per_day) days",
        },
        "columns": list(GROUND_TRUTH_COLUMNS),
    }


def write_ground_truth(path: str | os.PathLike[str], rows: list[dict[str, Any]], config: SimConfig) -> Path:
    """Write the CSV (atomically: temp file + rename) and its sidecar ``<stem>.meta.json``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=GROUND_TRUTH_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, target)
    meta = sidecar_path(target)
    meta.write_text(json.dumps(ground_truth_meta(config), indent=2) + "\n", encoding="utf-8")
    return target


def expected_label_probability(rate_per_day: float, window_days: float) -> float:
    """P(at least one order in the window) for a constant Poisson rate (used by the sanity tests)."""
    return 1.0 - math.exp(-rate_per_day * window_days)
