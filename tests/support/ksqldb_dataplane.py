"""TEST DOUBLE of a ksqlDB 0.29 server's DATA PLANE for the statement shapes of our order path.

Not shipped in the product. ``KsqlDbDouble`` (tests/support/ksqldb_double.py) keeps the catalog a
client builds over REST; this module runs the persistent queries of that catalog against a REAL Kafka
broker: it consumes their input topics (Avro in Confluent framing, the writer schema fetched by id from
the Schema Registry (double); or JSON) and produces their output (JSON) to their sink topics.

Supported shapes (anything else raises :class:`UnsupportedStatement`, nothing is skipped):
  * a source STREAM or TABLE over a topic (KEY_FORMAT 'KAFKA' string key; VALUE_FORMAT AVRO or JSON);
  * CTAS ``SELECT k, LATEST_BY_OFFSET(x [, ignoreNulls]) AS a, ... FROM <stream> GROUP BY k`` where
    ``k`` is the stream's key column and ``x`` a column or ``UNIX_TIMESTAMP(column)``;
  * CSAS ``SELECT <projection> FROM <stream> [s] LEFT JOIN <table> [t] ON s.key = t.key`` where the
    projection items are column references and AS_VALUE / ARRAY_LENGTH / UNIX_TIMESTAMP of one.

What it models, because our code relies on it (ksqlDB docs "Joins": "Partitioning requirements";
Kafka Streams "Stream time", max.task.idle.ms, KIP-353 / KIP-695):
  (a) a stream record joins ONLY table rows of the SAME partition number: every query keeps its state
      per input partition (one task per partition);
  (b) each persistent query is its own application: a table written by another query is visible to a
      join only through that table's topic, i.e. once the other query has written it. ``run()`` is a
      deterministic backfill: queries that READ a query-written source run BEFORE the query that
      writes it (an order a real server may take after a restart or a fresh CREATE with
      auto.offset.reset=earliest, where each query races through its backlog on its own); each query
      reads its inputs up to their end offsets at the moment it starts;
  (c) the inputs of ONE query (a stream and a table over topics) are processed per partition in
      record-timestamp order (the head with the smaller timestamp first; each partition in offset
      order; on equal timestamps the stream record first, since Kafka Streams does not promise one).
  Sinks: a query's output goes to the partition a Java producer would choose (murmur2 of the key, as
  Kafka Streams' default partitioner), with the input record's timestamp (aggregations: the max of
  the aggregate's timestamps); the sink topic is created with the input's partition count if missing.
  Records are emitted for every update (``cache.max.bytes.buffering=0``; a record cache would only
  fold updates of a key).

``run()`` may be called again: every query keeps its offsets and state and goes on from there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import fastavro
import requests
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import topics
from schemas.partitioning import partition_for_key
from tests.support.ksqldb_double import DataSource, KsqlDbDouble, Tok, lex, top_split


class UnsupportedStatement(Exception):
    """A statement shape the data plane does not implement (named, with the reason)."""


@dataclass
class Row:
    partition: int
    offset: int
    timestamp: int
    key: str | None
    value: dict[str, Any] | None  # None: a tombstone


# ---- expressions -------------------------------------------------------------------------------------

Node = tuple  # ("col", qualifier | None, name) | ("call", NAME, [args]) | ("lit", value)
_SCALARS = {"AS_VALUE", "ARRAY_LENGTH", "UNIX_TIMESTAMP"}


def _parse_expr(toks: list[Tok], where: str) -> Node:
    if len(toks) == 1 and toks[0].kind == "word" and toks[0].up in {"TRUE", "FALSE"}:
        return ("lit", toks[0].up == "TRUE")
    if len(toks) == 1 and toks[0].kind == "word" and toks[0].text.isdigit():
        return ("lit", int(toks[0].text))
    if len(toks) == 1 and toks[0].kind in {"word", "qid"}:
        return ("col", None, toks[0].name)
    if len(toks) == 3 and toks[1].text == "." and toks[2].kind in {"word", "qid"}:
        return ("col", toks[0].name, toks[2].name)
    if len(toks) >= 3 and toks[0].kind == "word" and toks[1].text == "(" and toks[-1].text == ")":
        args, depth, current = [], 0, []
        for t in toks[2:-1]:
            if t.text == "(" and t.kind == "sym":
                depth += 1
            elif t.text == ")" and t.kind == "sym":
                depth -= 1
            if t.text == "," and t.kind == "sym" and depth == 0:
                args.append(current)
                current = []
            else:
                current.append(t)
        if current:
            args.append(current)
        return ("call", toks[0].up, [_parse_expr(a, where) for a in args])
    raise UnsupportedStatement(f"{where}: expression {' '.join(t.text for t in toks)!r} is not supported "
                               "(column references and AS_VALUE/ARRAY_LENGTH/UNIX_TIMESTAMP of one)")


def _millis(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return int(round(value.timestamp() * 1000))
    return value


def _eval(node: Node, row: dict[str | None, dict[str, Any] | None], where: str) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "col":
        source = row.get(node[1]) if node[1] is not None else next(iter(row.values()))
        return None if source is None else source.get(node[2])
    name, args = node[1], node[2]
    if name not in _SCALARS or len(args) != 1:
        raise UnsupportedStatement(f"{where}: function {name} with {len(args)} argument(s) is not supported")
    value = _eval(args[0], row, where)
    if value is None or name == "AS_VALUE":
        return value
    return len(value) if name == "ARRAY_LENGTH" else _millis(value)


@dataclass
class Item:
    node: Node
    alias: str


def _items(toks: list[Tok], where: str) -> list[Item]:
    out = []
    for part in top_split(toks):
        if len(part) >= 3 and part[-2].up == "AS":
            out.append(Item(_parse_expr(part[:-2], where), part[-1].name))
        else:
            node = _parse_expr(part, where)
            if node[0] != "col":
                raise UnsupportedStatement(f"{where}: an expression without AS needs an alias")
            out.append(Item(node, node[2]))
    return out


@dataclass
class Select:
    items: list[Item]
    source: str
    source_alias: str | None
    join: tuple[str, str | None, Node, Node] | None  # table, alias, left, right of ON
    group_by: str | None


def _parse_select(statement: str, name: str) -> Select:
    toks = lex(statement)
    ups = [t.up for t in toks]
    where = f"data plane: {name}"
    at = next((i for i in range(len(toks) - 1) if ups[i] == "AS" and ups[i + 1] == "SELECT"), None)
    if at is None:
        raise UnsupportedStatement(f"{where}: not a CREATE ... AS SELECT")
    body = [t for t in toks[at + 2:] if not (t.kind == "sym" and t.text == ";")]
    bups = [t.up for t in body]
    if bups[-2:] == ["EMIT", "CHANGES"]:
        body, bups = body[:-2], bups[:-2]
    depth, frm = 0, None
    for i, t in enumerate(body):
        depth += (t.text == "(") - (t.text == ")") if t.kind == "sym" else 0
        if depth == 0 and bups[i] == "FROM":
            frm = i
            break
    if frm is None:
        raise UnsupportedStatement(f"{where}: SELECT without FROM")
    items = _items(body[:frm], where)
    rest, rups = body[frm + 1:], bups[frm + 1:]

    def name_and_alias(i: int) -> tuple[str, str | None, int]:
        src = rest[i].name
        if i + 1 < len(rest) and rest[i + 1].kind in {"word", "qid"} and rups[i + 1] not in {
                "LEFT", "INNER", "JOIN", "GROUP", "ON", "WHERE", "PARTITION", "WINDOW", "HAVING"}:
            return src, rest[i + 1].name, i + 2
        return src, None, i + 1

    source, alias, i = name_and_alias(0)
    join = None
    if i < len(rest) and rups[i] in {"LEFT", "JOIN", "INNER", "RIGHT", "FULL"}:
        if rups[i:i + 2] != ["LEFT", "JOIN"]:
            raise UnsupportedStatement(f"{where}: only LEFT JOIN is supported, not {rups[i]}")
        table, talias, i = name_and_alias(i + 2)
        if i >= len(rest) or rups[i] != "ON":
            raise UnsupportedStatement(f"{where}: JOIN without ON")
        on = rest[i + 1:]
        eq = next((k for k, t in enumerate(on) if t.text == "="), None)
        end = next((k for k, u in enumerate(rups[i + 1:]) if u in {"GROUP", "WHERE", "PARTITION", "WINDOW"}),
                   len(on))
        if eq is None:
            raise UnsupportedStatement(f"{where}: only an equi-join ON a = b is supported")
        join = (table, talias, _parse_expr(on[:eq], where), _parse_expr(on[eq + 1:end], where))
        i += 1 + end
    group_by = None
    if i < len(rest) and rups[i:i + 2] == ["GROUP", "BY"]:
        if len(rest) != i + 3:
            raise UnsupportedStatement(f"{where}: GROUP BY supports one column")
        group_by = rest[i + 2].name
        i = len(rest)
    if i < len(rest):
        raise UnsupportedStatement(f"{where}: clause {rest[i].text!r} is not supported (WHERE, WINDOW, "
                                   "PARTITION BY, HAVING, other joins)")
    return Select(items, source, alias, join, group_by)


# ---- the data plane --------------------------------------------------------------------------------


@dataclass
class _Query:
    id: str
    sink: DataSource
    select: Select
    inputs: list[DataSource]  # [stream] or [stream, table]
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    state: dict[int, dict[str, Any]] = field(default_factory=dict)  # partition -> key -> row/aggregate
    aggregates: list[tuple[str, Node, bool]] = field(default_factory=list)  # alias, argument, ignoreNulls
    written: int = 0


class KsqlDataPlane:
    """Runs the persistent queries that ``sinks`` need (transitively) over a real broker."""

    def __init__(self, ksqldb: KsqlDbDouble, bootstrap: str, registry_url: str, sinks: Iterable[str]):
        self.ksqldb = ksqldb
        self.bootstrap = bootstrap
        self.registry_url = registry_url.rstrip("/")
        self._schemas: dict[int, Any] = {}
        self.queries: dict[str, _Query] = {}
        for name in sinks:  # before any client exists: a refused shape leaves nothing open
            self._plan(name)
        self._consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dataplane-{uuid.uuid4()}",
                                   "enable.auto.commit": False, "enable.partition.eof": True,
                                   "auto.offset.reset": "earliest"})
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        for name in self.backfill_order()[::-1]:  # as ksqlDB does at CREATE: sinks get the input's partitions
            query = self.queries[name]
            self._ensure_topic(query.sink.topic, self._partitions(query.inputs[0].topic))

    def close(self) -> None:
        self._producer.flush(30)
        self._consumer.close()

    # -- planning -------------------------------------------------------------------------------------
    def _source(self, name: str, by: str) -> DataSource:
        src = self.ksqldb.sources.get(name)
        if src is None:
            raise UnsupportedStatement(f"data plane: {by} reads {name}, which the catalog does not have")
        if src.key_format != "KAFKA" or src.value_format not in {"AVRO", "JSON"}:
            raise UnsupportedStatement(f"data plane: {name}: only KEY_FORMAT 'KAFKA' with AVRO or JSON values")
        return src

    def _plan(self, name: str) -> None:
        if name in self.queries:
            return
        sink = self._source(name, "a requested sink")
        writers = self.ksqldb.writers(name)
        if not writers:
            raise UnsupportedStatement(f"data plane: {name} has no persistent query writing it")
        query = writers[0]
        select = _parse_select(sink.statement, name)
        inputs = [self._source(select.source, name)]
        if select.join:
            inputs.append(self._source(select.join[0], name))
            if inputs[0].kind != "STREAM" or inputs[1].kind != "TABLE":
                raise UnsupportedStatement(f"data plane: {name}: only stream-table joins are supported")
            if select.group_by:
                raise UnsupportedStatement(f"data plane: {name}: a join with GROUP BY is not supported")
        elif not select.group_by:
            raise UnsupportedStatement(f"data plane: {name}: only stream-table LEFT JOINs and GROUP BY "
                                       "aggregations are supported")
        elif inputs[0].kind != "STREAM" or select.group_by not in inputs[0].create.key_columns:
            raise UnsupportedStatement(f"data plane: {name}: GROUP BY must be the key column of a stream "
                                       "(a repartition is not modelled)")
        self.queries[name] = _Query(query.id, sink, select, inputs)
        if select.group_by:
            self.queries[name].aggregates = self._aggregates(name, select)
        for src in inputs:
            if self.ksqldb.writers(src.name):  # a source another query writes: run that query too
                self._plan(src.name)

    def _key_column(self, src: DataSource) -> str:
        """A source's key column: declared (KEY / PRIMARY KEY), or a planned aggregation's GROUP BY column."""
        if src.create.key_columns:
            return src.create.key_columns[0]
        query = self.queries.get(src.name)
        if query is not None and query.select.group_by:
            return query.select.group_by
        raise UnsupportedStatement(f"data plane: the key column of {src.name} is not known")

    def backfill_order(self) -> list[str]:
        """The queries in dependency order reversed: a query reading a query-written source runs
        before the query that writes it (see (b) above)."""
        order: list[str] = []

        def visit(name: str) -> None:  # writers first ...
            if name not in order:
                for src in self.queries[name].inputs:
                    if src.name in self.queries:
                        visit(src.name)
                order.append(name)

        for name in self.queries:
            visit(name)
        return order[::-1]  # ... then reversed

    # -- Kafka I/O ----------------------------------------------------------------------------------------
    def _partitions(self, topic: str) -> int:
        meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise UnsupportedStatement(f"data plane: topic {topic} does not exist on {self.bootstrap}")
        return len(meta.partitions)

    def _writer_schema(self, schema_id: int) -> Any:
        if schema_id not in self._schemas:
            reply = requests.get(f"{self.registry_url}/schemas/ids/{schema_id}", timeout=10)
            reply.raise_for_status()
            self._schemas[schema_id] = fastavro.parse_schema(json.loads(reply.json()["schema"]))
        return self._schemas[schema_id]

    def _decode(self, src: DataSource, raw: bytes | None) -> dict[str, Any] | None:
        if raw is None:
            return None
        if src.value_format == "JSON":
            record = json.loads(raw)
        else:
            if len(raw) < 5 or raw[0] != 0:
                raise ValueError(f"{src.topic}: value is not in Confluent framing")
            schema = self._writer_schema(int.from_bytes(raw[1:5], "big"))
            record = fastavro.schemaless_reader(io.BytesIO(raw[5:]), schema, None)
        lowered = {k.lower(): v for k, v in record.items()}
        return {c: _millis(record.get(c, lowered.get(c.lower()))) for c in src.create.columns}

    def _read(self, src: DataSource, query: _Query) -> dict[int, list[Row]]:
        """Every record of ``src`` after the query's offsets, up to the end offsets as of now."""
        parts = self._partitions(src.topic)
        ends, assign = {}, []
        for p in range(parts):
            low, high = self._consumer.get_watermark_offsets(TopicPartition(src.topic, p), timeout=10)
            start = max(query.offsets.get((src.topic, p), 0), low)
            if start < high:
                ends[p] = high
                assign.append(TopicPartition(src.topic, p, start))
        rows: dict[int, list[Row]] = {p: [] for p in range(parts)}
        if not assign:
            return rows
        self._consumer.assign(assign)
        pending = set(ends)
        while pending:
            for msg in self._consumer.consume(1000, 5.0) or []:
                p = msg.partition()
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                        continue
                    raise RuntimeError(f"data plane: reading {src.topic}[{p}]: {msg.error()}")
                if p not in pending or msg.offset() >= ends[p]:
                    continue
                key = msg.key().decode("utf-8") if msg.key() is not None else None
                rows[p].append(Row(p, msg.offset(), msg.timestamp()[1], key, self._decode(src, msg.value())))
                query.offsets[(src.topic, p)] = msg.offset() + 1
                if msg.offset() + 1 >= ends[p]:
                    pending.discard(p)
        self._consumer.unassign()
        return rows

    def _ensure_topic(self, topic: str, partitions: int) -> None:
        if topic not in self._consumer.list_topics(timeout=10).topics:
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
                fut.result(30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # metadata of a fresh topic takes a moment
                meta = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
                if meta is not None and meta.error is None and len(meta.partitions) == partitions:
                    return
                time.sleep(0.1)

    def _emit(self, query: _Query, key: str | None, value: dict[str, Any], timestamp: int, partitions: int) -> None:
        data = key.encode("utf-8") if key is not None else None
        partition = partition_for_key(data, partitions) if data is not None else 0
        self._producer.produce(query.sink.topic, key=data, value=json.dumps(value).encode(), partition=partition,
                               timestamp=timestamp)
        query.written += 1

    # -- running ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, int]:
        """One backfill pass (see (b)); returns the records each sink received in this pass."""
        before = {n: q.written for n, q in self.queries.items()}
        for name in self.backfill_order():
            query = self.queries[name]
            counts = {self._partitions(s.topic) for s in query.inputs}
            if len(counts) != 1:  # ksqlDB refuses such a join at CREATE time
                raise UnsupportedStatement(f"data plane: {name}: inputs have different partition counts {counts}")
            partitions = counts.pop()
            if query.select.join:
                self._run_join(query, partitions)
            else:
                self._run_aggregate(query, partitions)
            if self._producer.flush(30):
                raise RuntimeError(f"data plane: {name}: output not acknowledged within 30s")
        return {n: q.written - before[n] for n, q in self.queries.items()}

    @staticmethod
    def _aggregates(name: str, select: Select) -> list[tuple[str, Node, bool]]:
        where = f"data plane: {name}"
        items = select.items
        if items[0].node[0] != "col" or items[0].node[2] != select.group_by:
            raise UnsupportedStatement(f"{where}: the first item must be the GROUP BY column")
        aggs = []
        for item in items[1:]:
            node = item.node
            if node[0] != "call" or node[1] != "LATEST_BY_OFFSET" or len(node[2]) not in (1, 2) or (
                    len(node[2]) == 2 and (node[2][1][0] != "lit" or not isinstance(node[2][1][1], bool))):
                raise UnsupportedStatement(f"{where}: {item.alias}: only LATEST_BY_OFFSET(x [, ignoreNulls]) "
                                           "is supported")
            aggs.append((item.alias, node[2][0], node[2][1][1] if len(node[2]) == 2 else True))
        return aggs

    def _run_aggregate(self, query: _Query, partitions: int) -> None:
        src = query.inputs[0]
        where = f"data plane: {query.sink.name}"
        aggs = query.aggregates
        for p, rows in self._read(src, query).items():
            state = query.state.setdefault(p, {})
            for row in rows:
                if row.key is None or row.value is None:
                    continue  # ksqlDB drops records without a group key / value
                agg = state.setdefault(row.key, {"ts": row.timestamp, "values": {a: None for a, _, _ in aggs}})
                for alias, node, ignore_nulls in aggs:
                    value = _eval(node, {query.select.source_alias: row.value}, where)
                    if value is not None or not ignore_nulls:
                        agg["values"][alias] = value
                agg["ts"] = max(agg["ts"], row.timestamp)
                self._emit(query, row.key, dict(agg["values"]), agg["ts"], partitions)

    def _run_join(self, query: _Query, partitions: int) -> None:
        stream, table = query.inputs
        sel = query.select
        where = f"data plane: {query.sink.name}"
        s_alias, t_alias = sel.source_alias or stream.name, sel.join[1] or table.name
        left, right = sel.join[2], sel.join[3]
        s_key, t_key = self._key_column(stream), self._key_column(table)
        keys = {(s_alias, s_key), (t_alias, t_key)}
        if {(left[1], left[2]), (right[1], right[2])} != keys:
            raise UnsupportedStatement(f"{where}: only a join on both key columns is supported")
        key_items = [i for i in sel.items if i.node == ("col", s_alias, s_key)]
        if len(key_items) != 1:
            raise UnsupportedStatement(f"{where}: the projection must name the join key once")
        values = [i for i in sel.items if i is not key_items[0]]
        stream_rows, table_rows = self._read(stream, query), self._read(table, query)
        for p in range(partitions):
            state = query.state.setdefault(p, {})  # this task's copy of the table: key -> row
            s_rows, t_rows = stream_rows.get(p, []), table_rows.get(p, [])
            si = ti = 0
            while si < len(s_rows) or ti < len(t_rows):
                # (c): the head with the smaller timestamp first; the stream record first on a tie
                take_table = si >= len(s_rows) or (ti < len(t_rows) and t_rows[ti].timestamp < s_rows[si].timestamp)
                if take_table:
                    row = t_rows[ti]
                    ti += 1
                    if row.key is not None:
                        if row.value is None:
                            state.pop(row.key, None)
                        else:
                            state[row.key] = {**row.value, t_key: row.key}
                    continue
                row = s_rows[si]
                si += 1
                if row.key is None or row.value is None:
                    continue  # ksqlDB drops stream records without a join key
                scope = {s_alias: {**row.value, s_key: row.key}, t_alias: state.get(row.key)}
                out = {i.alias: _eval(i.node, scope, where) for i in values}
                self._emit(query, row.key, out, row.timestamp, partitions)


# ---- the order path on isolated topics (shared by tests/engines/test_ksql_dataplane.py and bench) -----

ORDER_PATH_FILES = ("010-sources.sql", "020-profile.sql", "030-orders.sql")
ENRICHED = "S_CUSTOMER_ORDER_ENRICHED"
PROFILE_COLUMNS = ("first_name", "last_name", "email", "lifecycle_stage")
_WITHOUT_TOPIC = re.compile(
    r"(CREATE\s+(?:OR\s+REPLACE\s+)?(?:TABLE|STREAM)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s+WITH\s*\()(?![^)]*KAFKA_TOPIC)",
    re.IGNORECASE)


def isolate(sql: str, suffix: str) -> str:
    """``sql`` with every registry topic renamed ``<name>.<suffix>`` and every query's default sink topic
    made explicit the same way, so that runs sharing one broker do not read each other's records."""
    for name in topics.BY_NAME:
        sql = sql.replace(f"'{name}'", f"'{name}.{suffix}'")
    return _WITHOUT_TOPIC.sub(lambda m: f"{m.group(1)}KAFKA_TOPIC = '{m.group(2)}.{suffix}', ", sql)


def old_join(orders_sql: str) -> str:
    """030-orders.sql as it was before issue 13: the join read the derived T_CUSTOMER_PROFILE."""
    new = "LEFT JOIN T_CUSTOMER_PROFILE_SOURCE p"
    if new not in orders_sql:
        raise ValueError("030-orders.sql no longer joins T_CUSTOMER_PROFILE_SOURCE")
    return orders_sql.replace(new, "LEFT JOIN T_CUSTOMER_PROFILE p")


class _Renamed:
    """A seed publisher that sends each topic's records to its isolated copy."""

    def __init__(self, inner: Any, renamed: dict[str, topics.Topic]):
        self.inner, self.renamed = inner, renamed
        self.stats = getattr(inner, "stats", None)

    def publish(self, topic: topics.Topic, records: Any) -> int:
        return self.inner.publish(self.renamed[topic.name], records)

    def close(self) -> None:
        self.inner.close()


@dataclass
class EnrichmentReport:
    orders: int  # records on the enriched topic
    profile_first: int  # ... whose customer's first profile record is older than the order record
    null_where_profile_first: int  # ... of those, with null profile columns
    nulls: int  # all records with null profile columns
    null_keys: set[str]

    @property
    def share(self) -> float:
        return self.null_where_profile_first / self.profile_first if self.profile_first else 0.0


class OrderPath:
    """ksql/'s order path (or ``files``) applied to a fresh KsqlDbDouble on isolated topics of ``bootstrap``,
    with a data plane running S_CUSTOMER_ORDER_ENRICHED and what it needs."""

    def __init__(self, bootstrap: str, registry_url: str, files: dict[str, str], partitions: int = 3):
        self.bootstrap, self.registry_url = bootstrap, registry_url
        suffix = uuid.uuid4().hex[:8]
        self.topics = {t.name: dataclasses.replace(t, name=f"{t.name}.{suffix}") for t in topics.SOURCE_TOPICS}
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for fut in admin.create_topics([NewTopic(t.name, partitions, 1) for t in self.topics.values()]).values():
            fut.result(30)
        self.ksqldb = KsqlDbDouble({t.name for t in self.topics.values()})
        for name in sorted(files):
            status, reply, _ = self.ksqldb.ksql({"ksql": isolate(files[name], suffix), "streamsProperties": {}})
            if status != 200:
                raise RuntimeError(f"{name} refused by the ksqlDB double: {reply}")
        self.plane = KsqlDataPlane(self.ksqldb, bootstrap, registry_url, [ENRICHED])

    def publisher(self, partitioner: str | None = None) -> _Renamed:
        """The seed's Kafka transport; ``partitioner`` overrides its (murmur2) placement, e.g.
        ``consistent_random`` for librdkafka's CRC32 default."""
        from seed.publish import KafkaPublisher
        from seed.settings import PublisherSettings

        conf = {"partitioner": partitioner} if partitioner else None
        inner = KafkaPublisher(PublisherSettings(transport="kafka", bootstrap_servers=self.bootstrap,
                                                 schema_registry_url=self.registry_url, request_timeout_s=10),
                               producer_conf=conf)
        return _Renamed(inner, self.topics)

    def close(self) -> None:
        self.plane.close()

    def _all(self, topic: str) -> list[tuple[str | None, int, dict[str, Any] | None]]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"report-{uuid.uuid4()}",
                            "enable.auto.commit": False, "enable.partition.eof": True})
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, 0) for p in parts])
            pending, out = set(parts), []
            while pending:
                for msg in consumer.consume(1000, 5.0) or []:
                    if msg.error() is not None:
                        if msg.error().code() != KafkaError._PARTITION_EOF:
                            raise RuntimeError(f"reading {topic}: {msg.error()}")
                        pending.discard(msg.partition())
                        continue
                    value = msg.value()
                    out.append((msg.key().decode() if msg.key() else None, msg.timestamp()[1],
                                json.loads(value) if value is not None and value[:1] == b"{" else None))
            return out
        finally:
            consumer.close()

    def report(self) -> EnrichmentReport:
        """Nulls on the enriched topic, split by whether the profile was published before the order
        (by record timestamp: ties are excluded, a real server may take either first)."""
        first: dict[str, int] = {}
        for key, ts, _ in self._all(self.topics[topics.CUSTOMER_PROFILE.name].name):
            if key is not None:
                first[key] = min(ts, first.get(key, ts))
        enriched = self._all(self.plane.queries[ENRICHED].sink.topic)
        before = [(k, ts, v) for k, ts, v in enriched if k in first and first[k] < ts]
        null = [(k, ts, v) for k, ts, v in enriched if v is not None and all(v.get(c) is None for c in PROFILE_COLUMNS)]
        return EnrichmentReport(
            orders=len(enriched), profile_first=len(before),
            null_where_profile_first=sum(1 for k, _, v in before if all(v.get(c) is None for c in PROFILE_COLUMNS)),
            nulls=len(null), null_keys={k for k, _, _ in null if k is not None})


def publish_default_seed(path: OrderPath) -> int:
    """The default seed run (seed.settings defaults: 1000 customers, 90 days, seed 42) through the CLI's
    own Run and the Kafka transport (murmur2), into the order path's isolated topics."""
    import os

    from seed.cli import Run
    from seed.settings import SeedSettings

    settings = SeedSettings.from_env({"PUBLISH_TRANSPORT": "kafka", "KAFKA_BOOTSTRAP_SERVERS": path.bootstrap,
                                      "SCHEMA_REGISTRY_URL": path.registry_url, "LOG_LEVEL": "WARNING"})
    with open(os.devnull, "w") as devnull:
        run = Run(settings, stderr=devnull, stdout=devnull, progress=False,
                  publisher_factory=lambda _settings: path.publisher())
        if run.publish() != 0:
            raise RuntimeError("the default seed run failed to publish")
    return run.sent
