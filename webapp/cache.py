"""The Redis cache behind the customer table: layout, the batch writer and the bounded readers.

Layout (all keys under a few fixed prefixes, so a reset never touches anything else in a shared Redis):

``customer:<id>``           HASH  the customer's fields (strings), plus internal ``_``-prefixed fields:
                                  ``_seen_<source>`` (cache write time, ms, per source topic),
                                  ``_m:<index>`` (its member in each text index), ``_terms``.
``customers:ids``           ZSET  every cached customer id, score 0 (lexical: the customer_id sort).
``customers:idx:<column>``  ZSET  one per sortable column. Numeric columns: member = id, score = value
                                  (-inf when missing). Text columns: score 0, member =
                                  ``<lower-cased value>\\x1f<id>``, so rank order is lexical order.
                                  Every customer is in every index: a missing value sorts lowest.
``customers:search``        ZSET  score 0, members ``<term>\\x1f<id>``: a lexical PREFIX index over
                                  names, full name, email, email domain and id.
``cache:meta``              HASH  ``epoch`` (identity of this cache's contents), ``version`` (bumped per
                                  written batch: the live refresh watches it), ``last_write_ms``.
``cache:offsets``           HASH  ``<topic>:<partition>`` -> next offset, written atomically with the data.
``cache:stats``             HASH  ``records:<topic>``, ``malformed:<topic>`` counters.
``actions:sent``            LIST  the last actions the UI published (JSON), newest first; not cache data.

Writes: one Lua script call per consumed batch (atomic, one round trip): it checks the epoch, applies
every customer update with its index maintenance, stores the batch's next offsets and bumps the
version. Atomicity matters because the three source topics' partitions can be consumed by different
processes (gunicorn workers, replicas) that update the same customer; each field is owned by one
topic, and the script makes "add a placeholder to the indexes of the fields I do not own" safe.

Reads: a table page is a fixed number of round trips and commands whatever its size: (1) ZCARD +
ZRANGE of the sort index in one pipeline, (2) one small read-only script that HMGETs the rows (one
command for the whole page, no call per row). A search adds one: the prefix index is read with
ZRANGE BYLEX LIMIT (bounded by ``search_max_matches``), then the matches are ordered by the sort
column (one ZMSCORE, or the same script reading each match's text-index member).

Search trade-off: prefix matching of whole terms only (``love`` finds Lovelace, ``velace`` does not),
and at most ``search_max_matches`` matches are considered (the page says so when a search hits the
cap). In exchange every search costs O(log N + cap) in Redis regardless of how many customers are
cached, and the index is maintained in the same atomic write as the data.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from webapp import model
from webapp.model import COLUMN_BY_KEY, COLUMNS, Column

SEP = "\x1f"  # between a value and the id in text index members
TERM_SEP = "\x1e"  # between stored members in ``_terms``

IDS = "customers:ids"
SEARCH = "customers:search"
META = "cache:meta"
OFFSETS = "cache:offsets"
STATS = "cache:stats"
ACTIONS = "actions:sent"
ACTIONS_KEPT = 100
RESET_PATTERNS = ("customer:*", "customers:*", "cache:*")
SOURCES = (model.CONSOLIDATED, model.PROPENSITY, model.SEGMENT)

RedisError = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError)


def customer_key(customer_id: str) -> str:
    return f"customer:{customer_id}"


def index_key(column: Column) -> str:
    return IDS if column.key == "customer_id" else f"customers:idx:{column.key}"


NUM_INDEXES = tuple(index_key(c) for c in COLUMNS if c.sort == "num")
LEX_INDEXES = tuple(index_key(c) for c in COLUMNS if c.sort == "lex" and c.key != "customer_id")


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


# ---- writer ---------------------------------------------------------------------------------------------------

_WRITE_BATCH = r"""
local p = cjson.decode(ARGV[1])
local cur = redis.call('HGET', p.meta, 'epoch')
if cur ~= p.epoch then
  return {0, cur or ''}
end
local SEP = '\31'
local function set_lex(key, z, member)
  local old = redis.call('HGET', key, '_m:' .. z)
  if old ~= member then
    if old then redis.call('ZREM', z, old) end
    redis.call('ZADD', z, 0, member)
    redis.call('HSET', key, '_m:' .. z, member)
  end
end
local function drop_terms(key)
  local old = redis.call('HGET', key, '_terms')
  if old then
    for m in string.gmatch(old, '[^\30]+') do redis.call('ZREM', p.search, m) end
  end
end
local function purge(key, id)
  for _, z in ipairs(p.num_all) do redis.call('ZREM', z, id) end
  for _, z in ipairs(p.lex_all) do
    local m = redis.call('HGET', key, '_m:' .. z)
    if m then redis.call('ZREM', z, m) end
  end
  drop_terms(key)
  redis.call('ZREM', p.ids, id)
  redis.call('DEL', key)
end
local purged = 0
for _, it in ipairs(p.items) do
  local key, id = it.k, it.id
  redis.call('ZADD', p.ids, 0, id)
  if #it.hset > 0 then redis.call('HSET', key, unpack(it.hset)) end
  if #it.hdel > 0 then redis.call('HDEL', key, unpack(it.hdel)) end
  local owned = {}
  for _, e in ipairs(it.num) do
    redis.call('ZADD', e[1], e[2], id)
    owned[e[1]] = true
  end
  for _, z in ipairs(p.num_all) do
    if not owned[z] then redis.call('ZADD', z, 'NX', '-inf', id) end
  end
  for _, e in ipairs(it.lex) do
    set_lex(key, e[1], e[2] .. SEP .. id)
    owned[e[1]] = true
  end
  for _, z in ipairs(p.lex_all) do
    if not owned[z] and redis.call('HEXISTS', key, '_m:' .. z) == 0 then set_lex(key, z, SEP .. id) end
  end
  if it.terms then
    drop_terms(key)
    local members = {}
    for _, t in ipairs(it.terms) do
      local m = t .. SEP .. id
      redis.call('ZADD', p.search, 0, m)
      members[#members + 1] = m
    end
    if #members > 0 then
      redis.call('HSET', key, '_terms', table.concat(members, '\30'))
    else
      redis.call('HDEL', key, '_terms')
    end
  end
  if it.tomb == 1 then
    local alive = 0
    for _, s in ipairs(p.sources) do alive = alive + redis.call('HEXISTS', key, '_seen_' .. s) end
    if alive == 0 then
      purge(key, id)
      purged = purged + 1
    end
  end
end
if #p.offsets > 0 then redis.call('HSET', p.offsets_key, unpack(p.offsets)) end
for i = 1, #p.stats, 2 do redis.call('HINCRBY', p.stats_key, p.stats[i], p.stats[i + 1]) end
redis.call('HSET', p.meta, 'last_write_ms', p.now)
local version = redis.call('HINCRBY', p.meta, 'version', 1)
return {1, version, purged}
"""

# Read side: the same fields of many hashes in ONE command (a page's rows are one call, not one per row).
_HMGET_MANY = r"""
local n = tonumber(ARGV[1])
local fields = {}
for i = 2, n + 1 do fields[#fields + 1] = ARGV[i] end
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HMGET', key, unpack(fields)) end
return out
"""

_RESET = r"""
local n = 0
for _, pattern in ipairs(ARGV) do
  local cursor = '0'
  repeat
    local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = r[1]
    for _, k in ipairs(r[2]) do
      redis.call('UNLINK', k)
      n = n + 1
    end
  until cursor == '0'
end
return n
"""


@dataclass
class Update:
    """One source record for one customer: every field the source owns (None = null), or a tombstone."""

    customer_id: str
    source: str
    fields: dict[str, Any] = field(default_factory=dict)
    tombstone: bool = False


def _item(update: Update, now_ms: int) -> dict[str, Any]:
    owned = model.FIELDS_BY_SOURCE[update.source]
    values = {f.name: None for f in owned} if update.tombstone else update.fields
    hset: list[str] = ["customer_id", update.customer_id]
    hdel: list[str] = []
    for f in owned:
        value = values.get(f.name)
        if value is None:
            hdel.append(f.name)
        else:
            hset += [f.name, model.to_hash_value(f.kind, value)]
    seen = f"_seen_{update.source}"
    if update.tombstone:
        hdel.append(seen)
    else:
        hset += [seen, str(now_ms)]
    num: list[list[str]] = []
    lex: list[list[str]] = []
    for column in COLUMNS:
        if column.source != update.source or column.key == "customer_id":
            continue
        value = model.sort_value(column, values)
        if column.sort == "num":
            num.append([index_key(column), "-inf" if value is None else repr(float(value))])
        else:
            lex.append([index_key(column), "" if value is None else str(value)])
    item: dict[str, Any] = {
        "k": customer_key(update.customer_id), "id": update.customer_id, "hset": hset, "hdel": hdel,
        "num": num, "lex": lex, "tomb": 1 if update.tombstone else 0,
    }
    if update.source == model.CONSOLIDATED:
        item["terms"] = [] if update.tombstone else model.search_terms(update.customer_id, values)
    return item


class EpochMismatch(Exception):
    """The cache was wiped or reset since this writer adopted its epoch: positions must be re-read."""

    def __init__(self, current: str | None):
        self.current = current
        super().__init__(f"cache epoch is now {current or '(none)'}")


# ---- readers ----------------------------------------------------------------------------------------------------


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


ACTION_FIELDS = ("_seen_consolidated", "order_count", "engagement_delivered", "engagement_failed",
                 "engagement_bounced", "lifetime_value")


def engagement_total(fields: Mapping[str, Any]) -> int:
    return sum(int(fields.get(k) or 0) for k in ("engagement_delivered", "engagement_failed", "engagement_bounced"))


def action_arrived(action: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether the pipeline's consolidated view reflects a sent action (never guessed by the UI)."""
    if fields.get("_seen_consolidated") is None:
        return False
    kind = action.get("kind")
    before = action.get("before") or 0
    if kind == "order":
        return int(fields.get("order_count") or 0) > before
    if kind == "engagement":
        return engagement_total(fields) > before
    return True  # a created customer: it is in the view


class Cache:
    def __init__(self, client: redis.Redis, *, search_max_matches: int = 1000):
        self.redis = client
        self.search_max_matches = search_max_matches
        self._write = client.register_script(_WRITE_BATCH)
        self._reset = client.register_script(_RESET)
        self._hmget_many = client.register_script(_HMGET_MANY)

    # -- writer side ---------------------------------------------------------------------------------------
    def claim_epoch(self) -> tuple[str, bool]:
        """(the cache's epoch, whether it was missing: an empty, wiped or reset cache)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(META, "epoch", uuid.uuid4().hex)
        pipe.hget(META, "epoch")
        created, epoch = pipe.execute()
        return epoch, bool(created)

    def epoch(self) -> str | None:
        return self.redis.hget(META, "epoch")

    def reset(self) -> int:
        """Delete every cache key (not the sent-actions list) atomically; returns how many."""
        return int(self._reset(keys=[], args=list(RESET_PATTERNS)))

    def stored_offsets(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        raw = self.redis.hmget(OFFSETS, [f"{t}:{p}" for t, p in partitions])
        return {tp: int(v) for tp, v in zip(partitions, raw, strict=True) if v is not None}

    def write_batch(
        self,
        epoch: str,
        updates: Iterable[Update],
        offsets: Mapping[tuple[str, int], int],
        counts: Mapping[str, int] | None = None,
        now_ms: int | None = None,
    ) -> int:
        """Apply a batch atomically; returns the new cache version. Raises EpochMismatch (nothing written)
        when the cache was wiped or reset, and redis errors when Redis is unreachable."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        last: dict[tuple[str, str], Update] = {}
        for update in updates:  # each record carries all the fields its source owns: the last one wins
            last.pop((update.customer_id, update.source), None)
            last[(update.customer_id, update.source)] = update
        payload = {
            "epoch": epoch, "meta": META, "ids": IDS, "search": SEARCH, "offsets_key": OFFSETS,
            "stats_key": STATS, "num_all": list(NUM_INDEXES), "lex_all": list(LEX_INDEXES),
            "sources": list(SOURCES), "now": str(now_ms),
            "items": [_item(u, now_ms) for u in last.values()],
            "offsets": [x for (t, p), off in offsets.items() for x in (f"{t}:{p}", str(off))],
            "stats": [x for name, n in (counts or {}).items() if n for x in (name, str(n))],
        }
        ok, value, *_ = self._write(keys=[], args=[json.dumps(payload)])
        if not ok:
            raise EpochMismatch(value or None)
        return int(value)

    # -- reader side --------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(META)
        pipe.hgetall(STATS)
        pipe.zcard(IDS)
        meta, stats, count = pipe.execute()
        malformed = Counter({k.split(":", 1)[1]: int(v) for k, v in stats.items() if k.startswith("malformed:")})
        return {
            "version": int(meta.get("version") or 0),
            "last_write_ms": int(meta["last_write_ms"]) if meta.get("last_write_ms") else None,
            "customers": int(count),
            "malformed": dict(malformed),
            "records": {k.split(":", 1)[1]: int(v) for k, v in stats.items() if k.startswith("records:")},
        }

    def version(self) -> int:
        return int(self.redis.hget(META, "version") or 0)

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
            ids = [member_id(m) for m in members]
        else:
            matched, truncated = self._search(query)
            total = len(matched)
            ids = self._ordered(matched, column, direction)[start:start + per_page]
        return Page(self._rows(ids), int(total), page, per_page, sort, direction, query, truncated)

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
        """Order search matches exactly as the sort index would: one round trip."""
        if not ids:
            return []
        desc = direction == "desc"
        if column.key == "customer_id":
            return sorted(ids, key=lambda i: i.encode(), reverse=desc)
        key = index_key(column)
        if column.sort == "num":
            scores = self.redis.zmscore(key, ids)
            pairs = [(-math.inf if s is None else float(s), i.encode()) for s, i in zip(scores, ids, strict=True)]
            return [i.decode() for _, i in sorted(pairs, reverse=desc)]
        members = [values[0] for values in self.hmget_many(ids, (f"_m:{key}",))]
        keyed = [((m or SEP + i).encode(), i) for m, i in zip(members, ids, strict=True)]
        return [i for _, i in sorted(keyed, reverse=desc)]

    def hmget_many(self, ids: Sequence[str], fields: Sequence[str]) -> list[list[str | None]]:
        """``fields`` of every customer in ``ids``: one command, one round trip (a script)."""
        if not ids:
            return []
        return self._hmget_many(keys=[customer_key(i) for i in ids], args=[len(fields), *fields])

    def _rows(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        rows = []
        for i, values in zip(ids, self.hmget_many(ids, model.ROW_FIELDS), strict=True):
            raw = dict(zip(model.ROW_FIELDS, values, strict=True))
            if raw["customer_id"] is None:  # removed between the index read and this one
                continue
            rows.append(model.customer_view(i, raw))
        return rows

    def customer(self, customer_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(customer_key(customer_id))
        if not raw:
            return None
        return model.customer_view(customer_id, raw)

    # -- sent actions ----------------------------------------------------------------------------------------------
    def customer_counts(self, customer_id: str) -> dict[str, Any]:
        values = self.redis.hmget(customer_key(customer_id), ACTION_FIELDS)
        return dict(zip(ACTION_FIELDS, values, strict=True))

    def record_action(self, action: Mapping[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(ACTIONS, json.dumps(dict(action)))
        pipe.ltrim(ACTIONS, 0, ACTIONS_KEPT - 1)
        pipe.execute()

    def actions(self, limit: int = 15, customer_id: str | None = None) -> list[dict[str, Any]]:
        """The latest sent actions with their status against the pipeline's view: two round trips."""
        actions = []
        for raw in self.redis.lrange(ACTIONS, 0, ACTIONS_KEPT - 1):
            try:
                action = json.loads(raw)
            except ValueError:
                continue
            if isinstance(action, dict) and (customer_id is None or action.get("customer_id") == customer_id):
                actions.append(action)
            if len(actions) >= limit:
                break
        if not actions:
            return []
        statuses = self.hmget_many([str(a.get("customer_id")) for a in actions], ACTION_FIELDS)
        for action, values in zip(actions, statuses, strict=True):
            fields = dict(zip(ACTION_FIELDS, values, strict=True))
            action["arrived"] = action_arrived(action, fields)
            view = model.from_hash(fields)
            action["view"] = view if action["arrived"] else None
            action["sent_iso"] = model.iso(action.get("sent_ms"))
        return actions
