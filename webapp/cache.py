"""The Redis cache behind the web UI: its layout, the one writer (the feeder) and the bounded readers.

Layout (a few fixed prefixes, so a reset never touches anything else in a shared Redis):

``customer:<id>``           HASH  the customer's fields under their contract names (strings), the
                                  internal ``_consolidated`` marker, and the history lists as JSON
                                  (``score_history``, ``segment_history``, ``recent_orders``,
                                  ``recent_engagements``; newest first, at most HISTORY_MAX each).
                                  An erased customer (``dom.customer.erasure.v1``) keeps only
                                  ``_erased`` (the request's time): nothing else of it is stored
                                  again, so no later record brings its personal fields back.
``customers:ids``           ZSET  every listed customer (known to one of the view's three topics), score 0.
``customers:idx:<column>``  ZSET  one per sortable column, every listed customer in every index. Numeric:
                                  member = id, score = value (-inf when missing). Text: score 0, member
                                  ``<lower-cased value>\\x1f<id>`` (lexical order = rank order).
``customers:search``        ZSET  ``<term>\\x1f<id>``: a lexical PREFIX index over names, full name,
                                  email, email domain and id.
``insights:segments``       HASH  segment -> listed customers ("" = no segment yet).
``insights:stages``         HASH  ``<declared>\\x1f<behavioural>`` -> listed customers.
``insights:scores``         HASH  ``<segment>\\x1f<bucket 0-9>`` -> scored customers.
``insights:consistency``    STRING the newest consistency report (``webapp.status.ConsistencyReport``, JSON):
                                  of the reports read, the one checked last (a later offset wins a tie).
``cache:meta``              HASH  ``epoch`` (identity of this cache's contents), ``layout`` (LAYOUT),
                                  ``version`` (bumped per written batch: the live refresh watches it),
                                  ``last_write_ms``.
``cache:offsets``           HASH  ``<topic>:<partition>`` -> next offset, written with the data.
``cache:stats``             HASH  ``records:<topic>``, ``last_event_ms:<topic>``, ``last_written_ms:<topic>``.
``cache:mismatches``        HASH  ``<topic>\\x1f<kind>`` -> records that did not match their contract.
``feeder:lease``            STRING the id of the one feeder allowed to write (expires unless renewed).
``feeder:status``           STRING the feeder's status (``webapp.status.FeederStatus``, JSON).

One writer: only the feeder process holding ``feeder:lease`` writes, and every batch is one
MULTI/EXEC transaction WATCHing the lease and ``cache:meta``: the data, the indexes, the insight
counters, the batch's next offsets and the version go in together or not at all, and a feeder that
lost its lease (or a cache that was wiped or reset meanwhile) writes nothing. The writer reads the
touched customers first (one pipeline); with no other writer, what it read is what it replaces, so
the index and counter updates are computed in Python (no Lua). The web UI only reads.

Reads: a table page is 2 round trips whatever its size ((1) ZCARD + ZRANGE of the sort index, (2) one
read-only script returning the rows' fields as JSON); a search is 3 (the prefix index with ZRANGE
BYLEX LIMIT, bounded by ``search_max_matches``; the matches' sort values; the page's rows); the
insights are 2 (counters and the top scores, then the top rows).

Search trade-off: prefix matching of whole terms only (``love`` finds Lovelace, ``velace`` does not),
and at most ``search_max_matches`` matches are considered (the page says so when a search hits the
cap). In exchange every search costs O(log N + cap) in Redis regardless of how many customers are cached.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from schemas import probes, topics
from webapp import model
from webapp.model import COLUMN_BY_KEY, COLUMNS, Column
from webapp.records import REPORT_KEYS, Record
from webapp.status import ConsistencyReport, FeederStatus

SEP = "\x1f"  # between a value and the id in text index members
LAYOUT = "2"  # the layout above; a cache of another layout is rebuilt from the topics

IDS = "customers:ids"
SEARCH = "customers:search"
SEGMENTS = "insights:segments"
STAGES = "insights:stages"
SCORES = "insights:scores"
CONSISTENCY = "insights:consistency"
META = "cache:meta"
OFFSETS = "cache:offsets"
STATS = "cache:stats"
MISMATCHES = "cache:mismatches"
LEASE = "feeder:lease"
STATUS = "feeder:status"
# (actions:* is where the web UI of layout 1 kept the sent actions: they live in the session now)
RESET_PATTERNS = ("customer:*", "customers:*", "cache:*", "insights:*", "actions:*")
SCORE_BUCKETS = 10
TOP_N = 10
PROBE_TTL_S = 3600  # a make verify probe's hash expires after its last write (schemas/probes.py)

RedisError = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)

CONSOLIDATED = topics.CUSTOMER_CONSOLIDATED.name
SCORE = topics.PROPENSITY_SCORE.name
SEGMENT = topics.SEGMENT_MATERIALIZED.name
ORDERS = topics.ORDER_ENRICHED.name
ACTIVATIONS = topics.ACTIVATION_STATUS.name
CONSISTENCY_TOPIC = topics.CONSISTENCY.name
ERASURE = topics.CUSTOMER_ERASURE.name
ERASED = "_erased"  # internal hash field: the customer was forgotten (epoch ms of the request)


def customer_key(customer_id: str) -> str:
    return f"customer:{customer_id}"


def index_key(column: Column) -> str:
    return IDS if column.key == "customer_id" else f"customers:idx:{column.key}"


def member_id(member: str) -> str:
    return member.rsplit(SEP, 1)[-1]


def connect(url: str, password: str = "", *, timeout: float = 2.0, name: str = "webapp") -> redis.Redis:
    """A client that fails fast when Redis is down (one immediate retry for a stale pooled connection)."""
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": 1.0,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 1),
        "client_name": f"marketing-engine-{name}",
    }
    if password:
        kwargs["password"] = password
    return redis.Redis.from_url(url, **kwargs)


# ---- applying records to a customer (pure) ---------------------------------------------------------------------


def _history(raw: dict[str, str], name: str) -> list[dict[str, Any]]:
    try:
        items = json.loads(raw.get(name) or "[]")
    except ValueError:
        return []
    return items if isinstance(items, list) else []


def _put_history(raw: dict[str, str], name: str, items: list[dict[str, Any]], keep: int) -> None:
    if items:
        raw[name] = json.dumps(items[:keep], separators=(",", ":"), sort_keys=True)
    else:
        raw.pop(name, None)


def _upsert(items: list[dict[str, Any]], entry: dict[str, Any], identity: str, order: str) -> list[dict[str, Any]]:
    """``entry`` replaces the item with the same identity; newest (by ``order``) first."""
    rest = [i for i in items if i.get(identity) != entry[identity]]
    return sorted([entry, *rest], key=lambda i: (i.get(order) or 0, str(i.get(identity))), reverse=True)


def _set_fields(raw: dict[str, str], fields: Mapping[str, str], value: Mapping[str, Any] | None) -> None:
    for name, kind in fields.items():
        v = None if value is None else value.get(name)
        if v is None:
            raw.pop(name, None)
        else:
            raw[name] = model.to_hash_value(kind, v)


def apply(raw: dict[str, str], record: Record, history_max: int) -> None:
    """Apply one record to a customer's stored strings (in place). Idempotent: applying the same
    record twice leaves what applying it once does (history entries have identities).

    An erasure request empties the customer's hash but for the ERASED marker, and every later record
    of that customer is ignored: ksqlDB's view keeps the profile it aggregated (it does not propagate
    source tombstones, confluentinc/ksql#6938), so the next view record would carry the name, e-mail
    and phone again. The ids are UUIDs: a returning person is a new customer, not this one."""
    value = record.value
    if record.topic == ERASURE:
        if value is not None:
            erased_at = str(value["requested_at"])
            raw.clear()
            raw[ERASED] = erased_at
        return
    if ERASED in raw:
        return
    if record.topic == CONSOLIDATED:
        _set_fields(raw, model.CONSOLIDATED_FIELDS, value)
        if value is None:
            raw.pop(model.IN_VIEW, None)
        else:
            raw[model.IN_VIEW] = "1"
    elif record.topic == SCORE:
        _set_fields(raw, model.SCORE_FIELDS, value)
        if value is not None:
            entry = {k: value[k] for k in ("score", "model_version", "behavioural_stage", "scored_at")}
            entry["id"] = f"{value['scored_at']}:{value['model_version']}"
            _put_history(raw, "score_history", _upsert(_history(raw, "score_history"), entry, "id", "scored_at"),
                         history_max)
    elif record.topic == SEGMENT:
        before = raw.get("segment")
        after = None if value is None else value.get("segment")
        _set_fields(raw, model.SEGMENT_FIELDS, value)
        items = _history(raw, "segment_history")
        # A change is kept once: ksqlDB emits changes only, and a re-created query re-emits them with
        # their original timestamps (same segment, same time: the same change).
        seen = any(i.get("segment") == after and i.get("at") == record.timestamp_ms for i in items)
        if after is not None and after != before and not (seen and record.timestamp_ms is not None):
            entry = {"segment": after, "previous": before, "at": record.timestamp_ms}
            _put_history(raw, "segment_history", sorted([entry, *items], key=lambda i: i.get("at") or 0, reverse=True),
                         history_max)
    elif record.topic == ORDERS and value is not None:
        entry = {k: value[k] for k in ("order_id", "order_total", "currency", "channel", "item_count", "placed_at")}
        _put_history(raw, "recent_orders", _upsert(_history(raw, "recent_orders"), entry, "order_id", "placed_at"),
                     history_max)
    elif record.topic == ACTIVATIONS and value is not None:
        entry = {k: value[k] for k in ("activation_id", "order_id", "channel", "status", "delivered_at", "attempts")}
        _put_history(raw, "recent_engagements",
                     _upsert(_history(raw, "recent_engagements"), entry, "activation_id", "delivered_at"), history_max)


def listed(raw: Mapping[str, str]) -> bool:
    """In the customer list: known to one of the view's topics (history alone does not list a customer)."""
    return model.IN_VIEW in raw or any(name in raw for name in model.STORED_FIELDS)


def index_entries(customer_id: str, values: Mapping[str, Any]) -> dict[str, tuple[str, float]]:
    """index key -> (member, score) of a listed customer."""
    out: dict[str, tuple[str, float]] = {}
    for column in COLUMNS:
        key = index_key(column)
        if column.key == "customer_id":
            out[key] = (customer_id, 0.0)
            continue
        value = model.sort_value(column, values)
        if column.sort == "num":
            out[key] = (customer_id, -math.inf if value is None else float(value))
        else:
            out[key] = (f"{value or ''}{SEP}{customer_id}", 0.0)
    return out


def contributions(values: Mapping[str, Any]) -> Counter[tuple[str, str]]:
    """What one listed customer adds to the insight counters."""
    segment = values.get("segment") or ""
    out: Counter[tuple[str, str]] = Counter({
        (SEGMENTS, segment): 1,
        (STAGES, f"{values.get('lifecycle_stage') or ''}{SEP}{values.get('behavioural_stage') or ''}"): 1,
    })
    if values.get("score") is not None:
        out[(SCORES, f"{segment}{SEP}{model.score_bucket(values['score'], SCORE_BUCKETS)}")] += 1
    return out


class EpochMismatch(Exception):
    """The cache was wiped or reset since this writer adopted its epoch: positions must be re-read."""

    def __init__(self, current: str | None):
        self.current = current
        super().__init__(f"cache epoch is now {current or '(none)'}")


class LeaseLost(Exception):
    """Another feeder holds the write lease (or it expired): this one must not write."""


def newest_report(stored: str | None, records: Sequence[Record]) -> ConsistencyReport | None:
    """The consistency report to store from a batch (None: keep what is stored). Newest by checked_at,
    so an older run that finishes late (or a re-read of the topic) never replaces a newer report; among
    equals the later record wins. Tombstones are skipped: the current report stays."""
    newest = ConsistencyReport.from_json(stored)
    chosen = None
    for r in records:
        if r.topic == CONSISTENCY_TOPIC and r.value is not None:
            candidate = ConsistencyReport.from_record(r.value)
            if newest is None or candidate.checked_at >= newest.checked_at:
                newest = chosen = candidate
    return chosen


# ---- the writer (the feeder process only) ---------------------------------------------------------------------------


class CacheWriter:
    def __init__(self, client: redis.Redis, instance: str, *, history_max: int = 20, lease_ttl_ms: int = 15_000):
        self.redis = client
        self.instance = instance
        self.history_max = history_max
        self.lease_ttl_ms = lease_ttl_ms

    # -- the lease: one writer at a time -------------------------------------------------------------------------
    def acquire_lease(self) -> bool:
        """Take the lease if nobody holds it, or renew it if this feeder does."""
        if self.redis.set(LEASE, self.instance, nx=True, px=self.lease_ttl_ms):
            return True
        return self.renew_lease()

    def renew_lease(self) -> bool:
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(LEASE)
                if pipe.get(LEASE) != self.instance:
                    return False
                pipe.multi()
                pipe.pexpire(LEASE, self.lease_ttl_ms)
                pipe.execute()
                return True
            except redis.exceptions.WatchError:
                return False

    def release_lease(self) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(LEASE)
                if pipe.get(LEASE) == self.instance:
                    pipe.multi()
                    pipe.delete(LEASE)
                    pipe.execute()
            except redis.exceptions.WatchError:
                pass

    def lease_holder(self) -> str | None:
        return self.redis.get(LEASE)

    # -- epoch, layout, reset -----------------------------------------------------------------------------------
    def claim(self) -> tuple[str, bool]:
        """(the cache's epoch, whether the cache is new: empty, wiped, reset, or of another layout and
        therefore reset here). The caller holds the lease."""
        layout = self.redis.hget(META, "layout")
        if layout is not None and layout != LAYOUT or layout is None and self.redis.hget(META, "epoch"):
            self.reset()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(META, "epoch", uuid.uuid4().hex)
        pipe.hsetnx(META, "layout", LAYOUT)
        pipe.hget(META, "epoch")
        created, _, epoch = pipe.execute()
        return epoch, bool(created)

    def epoch(self) -> str | None:
        return self.redis.hget(META, "epoch")

    def reset(self) -> int:
        """Delete every cache key (not the lease, not the status); returns how many."""
        removed = 0
        for pattern in RESET_PATTERNS:
            batch: list[str] = []
            for key in self.redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += self.redis.unlink(*batch)
                    batch = []
            if batch:
                removed += self.redis.unlink(*batch)
        return removed

    def stored_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        raw = self.redis.hmget(OFFSETS, [f"{t}:{p}" for t, p in partitions])
        return {tp: int(v) for tp, v in zip(partitions, raw, strict=True) if v is not None}

    def stored_stats(self) -> tuple[dict[str, str], dict[str, str]]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(STATS)
        pipe.hgetall(MISMATCHES)
        stats, mismatches = pipe.execute()
        return stats, mismatches

    def write_status(self, status: FeederStatus) -> None:
        self.redis.set(STATUS, status.to_json())

    def stored_consistency(self) -> ConsistencyReport | None:
        return ConsistencyReport.from_json(self.redis.get(CONSISTENCY))

    # -- the batch ----------------------------------------------------------------------------------------------------
    def write_batch(
        self,
        epoch: str,
        records: Iterable[Record],
        offsets: Mapping[tuple[str, int], int],
        mismatches: Mapping[tuple[str, str], int] | None = None,
        now_ms: int | None = None,
    ) -> int:
        """Apply a batch in one transaction; returns the new cache version. Raises EpochMismatch or
        LeaseLost (nothing written), and redis errors when Redis is unreachable."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        records = list(records)
        ids = list(dict.fromkeys(r.customer_id for r in records if r.topic not in REPORT_KEYS))
        with self.redis.pipeline(transaction=True) as tx:
            try:
                tx.watch(LEASE, META)
                if tx.get(LEASE) != self.instance:
                    raise LeaseLost(f"the write lease is held by {tx.get(LEASE) or 'nobody'}")
                current = tx.hget(META, "epoch")
                if current != epoch:
                    raise EpochMismatch(current)
                before = self._read_raw(ids)
                after = {i: dict(raw) for i, raw in before.items()}
                per_topic: Counter[str] = Counter()
                last_event: dict[str, int] = {}
                report = newest_report(tx.get(CONSISTENCY), records)
                for r in records:
                    if r.topic not in REPORT_KEYS:
                        apply(after[r.customer_id], r, self.history_max)
                    per_topic[r.topic] += 1
                    if r.timestamp_ms is not None and r.timestamp_ms > last_event.get(r.topic, -1):
                        last_event[r.topic] = r.timestamp_ms
                tx.multi()
                counters: Counter[tuple[str, str]] = Counter()
                for customer_id in ids:
                    counters.update(self._queue_customer(tx, customer_id, before[customer_id], after[customer_id]))
                for (key, name), delta in counters.items():
                    if delta:
                        tx.hincrby(key, name, delta)
                if report is not None:
                    tx.set(CONSISTENCY, report.to_json())
                if offsets:
                    tx.hset(OFFSETS, mapping={f"{t}:{p}": str(o) for (t, p), o in offsets.items()})
                for topic, n in per_topic.items():
                    tx.hincrby(STATS, f"records:{topic}", n)
                    tx.hset(STATS, f"last_written_ms:{topic}", str(now_ms))
                for topic, stamp in last_event.items():
                    tx.hset(STATS, f"last_event_ms:{topic}", str(stamp))
                for (topic, kind), n in (mismatches or {}).items():
                    if n:
                        tx.hincrby(MISMATCHES, f"{topic}{SEP}{kind}", n)
                tx.hset(META, "last_write_ms", str(now_ms))
                tx.hincrby(META, "version", 1)
                return int(tx.execute()[-1])
            except redis.exceptions.WatchError:
                holder, current = self.redis.get(LEASE), self.redis.hget(META, "epoch")
                if holder != self.instance:
                    raise LeaseLost(f"the write lease is held by {holder or 'nobody'}") from None
                raise EpochMismatch(current) from None

    def _read_raw(self, ids: Sequence[str]) -> dict[str, dict[str, str]]:
        if not ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for customer_id in ids:
            pipe.hgetall(customer_key(customer_id))
        return dict(zip(ids, pipe.execute(), strict=True))

    def _queue_customer(self, tx: Any, customer_id: str, old: Mapping[str, str],
                        new: Mapping[str, str]) -> Counter[tuple[str, str]]:
        """Queue one customer's hash, index, search and counter changes; returns its counter deltas."""
        key = customer_key(customer_id)
        if not new:
            if old:
                tx.delete(key)
        else:
            changed = {k: v for k, v in new.items() if old.get(k) != v}
            if changed:
                tx.hset(key, mapping=changed)
            gone = [k for k in old if k not in new]
            if gone:
                tx.hdel(key, *gone)
        was, now = listed(old), listed(new)
        if probes.is_probe(customer_id):
            # make verify's probes: readable by id, never listed, searched or counted; gone after a while
            was = now = False
            if new:
                tx.expire(key, PROBE_TTL_S)
        old_values, new_values = model.typed(old), model.typed(new)
        old_idx = index_entries(customer_id, old_values) if was else {}
        new_idx = index_entries(customer_id, new_values) if now else {}
        for z in set(old_idx) | set(new_idx):
            before, after = old_idx.get(z), new_idx.get(z)
            if before == after:
                continue
            if before is not None and (after is None or before[0] != after[0]):
                tx.zrem(z, before[0])
            if after is not None:
                tx.zadd(z, {after[0]: after[1]})
        old_terms = {f"{t}{SEP}{customer_id}" for t in model.search_terms(customer_id, old_values)} if was else set()
        new_terms = {f"{t}{SEP}{customer_id}" for t in model.search_terms(customer_id, new_values)} if now else set()
        if old_terms - new_terms:
            tx.zrem(SEARCH, *(old_terms - new_terms))
        if new_terms - old_terms:
            tx.zadd(SEARCH, dict.fromkeys(new_terms - old_terms, 0))
        delta: Counter[tuple[str, str]] = Counter()
        if now:
            delta.update(contributions(new_values))
        if was:
            delta.subtract(contributions(old_values))
        return delta


# ---- readers (the web UI) -------------------------------------------------------------------------------------------


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    per_page: int
    sort: str
    direction: str
    query: str
    truncated: bool  # a search hit search_max_matches

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    def as_json(self) -> dict[str, Any]:
        return {
            "items": self.rows, "total": self.total, "page": self.page, "per_page": self.per_page,
            "pages": self.pages, "sort": self.sort, "dir": self.direction, "q": self.query,
            "truncated": self.truncated,
        }


@dataclass
class Insights:
    customers: int
    segments: list[tuple[str, int]]  # (segment, customers), most first; "" = no segment yet
    stages: dict[str, dict[str, int]]  # declared stage -> behavioural stage -> customers ("" = unknown)
    scores: list[int]  # customers per score bucket (0-0.1, ..., 0.9-1.0)
    scores_by_segment: dict[str, list[int]]
    top: list[dict[str, Any]]  # the TOP_N customers by score
    version: int
    feeder: FeederStatus | None
    consistency: ConsistencyReport | None = None  # the newest consistency report (None: none yet)

    @property
    def scored(self) -> int:
        return sum(self.scores)

    @property
    def segmented(self) -> int:
        return sum(n for s, n in self.segments if s)

    @property
    def segment_bars(self) -> list[tuple[str, int]]:
        return [(s or "no segment yet", n) for s, n in self.segments]

    @property
    def stage_peak(self) -> int:
        return max((n for row in self.stages.values() for n in row.values()), default=0)

    @property
    def declared(self) -> list[str]:
        return sorted(self.stages, key=_stage_order)

    @property
    def behavioural(self) -> list[str]:
        return sorted({b for row in self.stages.values() for b in row}, key=_stage_order)

    def as_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "segments": [{"segment": s or None, "customers": n} for s, n in self.segments],
            "stages": [{"declared": d or None, "behavioural": b or None, "customers": n}
                       for d in self.declared for b, n in sorted(self.stages[d].items(), key=lambda x: _stage_order(x[0]))],
            "score_buckets": [round(i / SCORE_BUCKETS, 1) for i in range(SCORE_BUCKETS + 1)],
            "scores": self.scores,
            "scored": self.scored,
            "scores_by_segment": [{"segment": s or None, "scores": b} for s, b in sorted(self.scores_by_segment.items())],
            "top": self.top,
            "consistency": None if self.consistency is None else asdict(self.consistency),
            "version": self.version,
        }


_STAGE_ORDER = ("prospect", "customer", "evangelist", "churn-risk")


def _stage_order(stage: str) -> tuple[int, str]:
    return (_STAGE_ORDER.index(stage) if stage in _STAGE_ORDER else len(_STAGE_ORDER) + (stage == ""), stage)


def history_of(raw: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {name: _history(dict(raw), name) for name in model.HISTORY_FIELDS}


# Many customers' fields in one read-only command (EVALSHA_RO: Redis refuses any write in it). The rows
# come back as one JSON string: parsing a reply of 25 x 25 elements in Python cost more than the
# round trips it saves (bench.bench_webapp); json.loads parses it in C.
_ROWS = r"""
local n = tonumber(ARGV[1])
local fields = {}
for i = 2, n + 1 do fields[#fields + 1] = ARGV[i] end
local out = {}
for i, key in ipairs(KEYS) do
  local values = redis.call('HMGET', key, unpack(fields))
  local row = {}
  for j = 1, n do row[j] = values[j] or cjson.null end
  out[i] = row
end
return cjson.encode(out)
"""
_ROWS_SHA = hashlib.sha1(_ROWS.encode()).hexdigest()  # noqa: S324 - Redis names scripts by their SHA-1


class CacheReader:
    """Read-only access (the web UI never writes Redis)."""

    def __init__(self, client: redis.Redis, *, search_max_matches: int = 1000):
        self.redis = client
        self.search_max_matches = search_max_matches
        self._rows_sha = _ROWS_SHA

    def version(self) -> int:
        return int(self.redis.hget(META, "version") or 0)

    def status(self) -> FeederStatus | None:
        return FeederStatus.from_json(self.redis.get(STATUS))

    def version_and_status(self) -> tuple[int, FeederStatus | None, int]:
        """(cache version, feeder status, listed customers): one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(META, "version")
        pipe.get(STATUS)
        pipe.zcard(IDS)
        version, status, count = pipe.execute()
        return int(version or 0), FeederStatus.from_json(status), int(count)

    def page(self, sort: str, direction: str, page: int, per_page: int, query: str = "") -> Page:
        column = COLUMN_BY_KEY[sort]
        start = (page - 1) * per_page
        truncated = False
        if not query:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zcard(IDS)
            if direction == "desc":
                pipe.zrevrange(index_key(column), start, start + per_page - 1)
            else:
                pipe.zrange(index_key(column), start, start + per_page - 1)
            total, members = pipe.execute()
            rows = self._rows([member_id(m) for m in members])
        else:
            matched, truncated = self._search(query)
            total = len(matched)
            rows = self._rows(self._ordered(matched, column, direction)[start:start + per_page])
        return Page(rows, int(total), page, per_page, sort, direction, query, truncated)

    def _search(self, query: str) -> tuple[list[str], bool]:
        """Distinct ids whose terms start with ``query`` (at most search_max_matches): one round trip."""
        cap = self.search_max_matches
        prefix = query.encode("utf-8")
        members = self.redis.zrangebylex(SEARCH, b"[" + prefix, b"[" + prefix + b"\xff", 0, cap * 4)
        ids: dict[str, None] = {}
        for m in members:
            ids.setdefault(member_id(m))
            if len(ids) > cap:
                break
        truncated = len(ids) > cap or len(members) >= cap * 4
        return list(ids)[:cap], truncated

    def _ordered(self, ids: list[str], column: Column, direction: str) -> list[str]:
        """Search matches in exactly the order the sort index gives (missing values lowest, then id), from
        their sort values only (one round trip: the index's scores, or the one or two fields a text
        column sorts by)."""
        desc = direction == "desc"
        if not ids or column.key == "customer_id":
            return sorted(ids, key=lambda i: i.encode(), reverse=desc)
        if column.sort == "num":
            scores = self.redis.zmscore(index_key(column), ids)
            pairs = [(-math.inf if s is None else float(s), i.encode()) for s, i in zip(scores, ids, strict=True)]
            return [i.decode() for _, i in sorted(pairs, reverse=desc)]
        fields = ("first_name", "last_name") if column.key == "name" else (column.key,)
        values = self._fields(ids, fields)
        keyed = []
        for customer_id, row in zip(ids, values, strict=True):
            value = model.sort_value(column, model.typed(dict(zip(fields, row, strict=True))))
            keyed.append((f"{value or ''}{SEP}{customer_id}".encode(), customer_id))
        return [i for _, i in sorted(keyed, reverse=desc)]

    def _fields(self, ids: Sequence[str], fields: Sequence[str]) -> list[list[str | None]]:
        """``fields`` of every customer in ``ids``: one read-only script call (one round trip)."""
        if not ids:
            return []
        keys = [customer_key(i) for i in ids]
        args = [len(fields), *fields]
        try:
            raw = self.redis.evalsha_ro(self._rows_sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:  # a restarted Redis forgot it
            self._rows_sha = self.redis.script_load(_ROWS)
            raw = self.redis.evalsha_ro(self._rows_sha, len(keys), *keys, *args)
        return json.loads(raw)

    def _rows(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The customer views of ``ids``: one round trip whatever their number."""
        rows = []
        for customer_id, values in zip(ids, self._fields(ids, model.READ_FIELDS), strict=True):
            raw = dict(zip(model.READ_FIELDS, values, strict=True))
            if any(v is not None for v in values):  # else removed between the index read and this one
                rows.append(model.customer_view(customer_id, raw))
        return rows

    def customer(self, customer_id: str) -> tuple[dict[str, Any] | None, dict[str, list[dict[str, Any]]]]:
        """(the customer's view, None when not listed; the history lists): one round trip."""
        raw = self.redis.hgetall(customer_key(customer_id))
        view = model.customer_view(customer_id, raw) if listed(raw) else None
        return view, history_of(raw)

    def views(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {row["customer_id"]: row for row in self._rows(ids)}

    def insights(self) -> Insights:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(SEGMENTS)
        pipe.hgetall(STAGES)
        pipe.hgetall(SCORES)
        pipe.zcard(IDS)
        pipe.zrevrangebyscore(index_key(COLUMN_BY_KEY["score"]), "+inf", "(-inf", start=0, num=TOP_N)
        pipe.hget(META, "version")
        pipe.get(STATUS)
        pipe.get(CONSISTENCY)
        segments, stages, scores, count, top_ids, version, status, consistency = pipe.execute()
        by_segment: dict[str, list[int]] = {}
        for name, n in scores.items():
            segment, bucket = name.rsplit(SEP, 1)
            if int(n):
                by_segment.setdefault(segment, [0] * SCORE_BUCKETS)[int(bucket)] += int(n)
        overall = [sum(b[i] for b in by_segment.values()) for i in range(SCORE_BUCKETS)]
        matrix: dict[str, dict[str, int]] = {}
        for name, n in stages.items():
            declared, behavioural = name.split(SEP, 1)
            if int(n):
                matrix.setdefault(declared, {})[behavioural] = int(n)
        rows = self._rows(top_ids)
        return Insights(
            customers=int(count),
            segments=sorted(((s, int(n)) for s, n in segments.items() if int(n)), key=lambda x: (-x[1], x[0])),
            stages=matrix, scores=overall, scores_by_segment=by_segment, top=rows,
            version=int(version or 0), feeder=FeederStatus.from_json(status),
            consistency=ConsistencyReport.from_json(consistency),
        )

    def meta(self) -> dict[str, Any]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(META)
        pipe.zcard(IDS)
        meta, count = pipe.execute()
        return {
            "version": int(meta.get("version") or 0),
            "last_write_ms": int(meta["last_write_ms"]) if meta.get("last_write_ms") else None,
            "customers": int(count),
        }
