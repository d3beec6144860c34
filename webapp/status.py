"""The feeder's status: a typed object the feeder writes to Redis (``feeder:status``, JSON) and the web
UI reads (the status pills, /readyz, the insights page's pipeline health). One writer, many readers;
the web never asks Kafka itself."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any

STATUS_FORMAT = 1  # bumped when a field changes meaning; a reader refuses other formats

# The feeder's states
STARTING, RUNNING, STANDBY, WAITING_REDIS, RESTARTING, STOPPED = (
    "starting", "running", "standby", "waiting for redis", "restarting", "stopped")


@dataclass
class TopicStatus:
    """One source topic as the feeder sees it."""

    topic: str
    lag: int | None = None  # records on the broker not yet in the cache (None: unknown)
    records: int = 0  # records written to the cache (this cache epoch)
    last_event_ms: int | None = None  # Kafka timestamp of the newest record written
    last_written_ms: int | None = None  # when the feeder last wrote one of its records
    mismatches: dict[str, int] = field(default_factory=dict)  # kind -> records (this cache epoch)

    @property
    def mismatched(self) -> int:
        return sum(self.mismatches.values())


@dataclass
class LayerStatus:
    """A Spark streaming query's newest committed batch, from the status the job publishes after its Delta
    commit (``dom.pipeline.batch.status.v1``, ``spark/status.py``): the web UI never reads Delta."""

    job: str  # the layer: bronze, silver, gold, score
    query: str
    batch_id: int
    rows: int
    newest_event_ms: int | None  # newest event time among the batch's committed rows
    committed_ms: int  # when the batch's Delta commit had succeeded

    @property
    def lag_ms(self) -> int | None:
        """Event-time freshness of the layer: commit time - newest event time."""
        return None if self.newest_event_ms is None else self.committed_ms - self.newest_event_ms


@dataclass
class ConsistencyReport:
    """The newest report of the consistency check (``python -m consistency``: ksqlDB's consolidated view
    against gold C360, customer by customer), as decoded from ``dom.pipeline.consistency.v1`` against its
    contract (``schemas/avro/consistency_report.avsc``; the same field names, times in epoch ms)."""

    checked_at: int
    customers: int
    checked: int  # agreeing + disagreeing
    agreeing: int
    disagreeing: int
    catching_up: int  # one side has not processed the customer's latest event yet: not compared
    metrics: list[str]
    settle_ms: int
    examples: list[dict[str, Any]]  # {customer_id, metric, view, gold}: a few disagreements
    forgotten: int = 0  # customers with an erasure request, left out (contract v2; none in a v1 report)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ConsistencyReport:
        fields = cls.__dataclass_fields__
        missing = [f for f, spec in fields.items() if f not in record and spec.default is MISSING]
        if missing:
            raise KeyError(missing[0])
        return cls(**{f: record[f] for f in fields if f in record})

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> ConsistencyReport | None:
        """None for nothing or a malformed value."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls.from_record(data) if isinstance(data, dict) else None
        except (KeyError, TypeError, ValueError):
            return None

    def summary(self, now_ms: int | None = None) -> str:
        """``998/1000 checked, 998 agree, 0 disagree, 2 catching up (checked 40 s ago); 1 forgotten``."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return (f"{self.checked}/{self.customers} checked, {self.agreeing} agree, {self.disagreeing} disagree, "
                f"{self.catching_up} catching up (checked {max(0, now_ms - self.checked_at) // 1000} s ago)"
                + (f"; {self.forgotten} forgotten" if self.forgotten else ""))


@dataclass
class FeederStatus:
    instance: str
    state: str = STARTING
    pid: int = 0
    started_ms: int = 0
    heartbeat_ms: int = 0  # written at least every STATUS_INTERVAL_S while the feeder runs
    group: str = ""
    kafka_ok: bool | None = None
    kafka_reason: str | None = "not connected yet"
    redis_ok: bool | None = None
    registry_reason: str | None = None  # set while the Schema Registry cannot be asked
    lag: int | None = None
    topics: dict[str, TopicStatus] = field(default_factory=dict)
    dead_letters: int | None = None  # records on the dead-letter topic (None: not known)
    dead_letters_reason: str | None = None
    batches: int = 0
    restarts: int = 0
    commit_failures: int = 0
    cache_rebuilds: int = 0
    last_error: str | None = None
    last_error_ms: int | None = None
    layers: dict[str, LayerStatus] = field(default_factory=dict)  # query -> its newest committed batch
    # the newest consistency report in the cache (insights:consistency), mirrored here for make status
    consistency: ConsistencyReport | None = None
    format: int = STATUS_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> FeederStatus | None:
        """None for nothing, a malformed value or another format (never a guess at its fields)."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("format") != STATUS_FORMAT:
                return None
            data["topics"] = {name: TopicStatus(**t) for name, t in (data.get("topics") or {}).items()}
            data["layers"] = {name: LayerStatus(**t) for name, t in (data.get("layers") or {}).items()}
            if data.get("consistency") is not None:
                data["consistency"] = ConsistencyReport.from_record(data["consistency"])
            return cls(**data)
        except (KeyError, TypeError, ValueError):
            return None

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.heartbeat_ms / 1000)

    @property
    def mismatched(self) -> int:
        return sum(t.mismatched for t in self.topics.values())

    @property
    def figures(self) -> str:
        """A digest of what the pipeline-health figures show (lag, records, mismatches, dead letters, the
        Spark layers' batches, the consistency report), not of the heartbeat: the live refresh re-renders the panels that show
        them when it changes. Those figures move without a cache write (lag after the last batch, a
        status written after the batch that bumped the version), so the cache version alone misses them."""
        shown = [self.lag, self.dead_letters,
                 sorted((n, t.lag, t.records, t.last_event_ms, sorted(t.mismatches.items()))
                        for n, t in self.topics.items()),
                 sorted((n, q.batch_id, q.committed_ms) for n, q in self.layers.items()),
                 None if self.consistency is None else self.consistency.checked_at]
        return hashlib.blake2b(json.dumps(shown).encode(), digest_size=6).hexdigest()

    def as_json(self, now: float | None = None) -> dict[str, Any]:
        body = asdict(self)
        body["age_s"] = round(self.age_s(now), 1)
        for name, layer in self.layers.items():
            body["layers"][name]["lag_ms"] = layer.lag_ms
        return body
