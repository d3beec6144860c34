"""TEST DOUBLE of a ksqlDB 0.29 server's REST API (no ksqlDB server can run here).

Not shipped in the product and independent of it (its own lexer and parser, so a product parsing
bug is not mirrored here). Follows the documented request/response and error shapes
(../shared/design/reference.md, ksqlDB docs "ksql endpoint", "status endpoint"):

  POST /ksql  (Content-Type/Accept application/vnd.ksql.v1+json or application/json, else 415)
      body {"ksql": "...;", "streamsProperties": {...}, "commandSequenceNumber": n?}
      -> 200 [entity per statement]
         CREATE/DROP/TERMINATE: {"@type":"currentStatus","statementText","commandId":"stream/`X`/create",
                                 "commandStatus":{"status","message","queryId"},"commandSequenceNumber":n,
                                 "warnings":[]}
         CREATE ... IF NOT EXISTS on an existing name: {"@type":"warning_entity","statementText","message",
                                 "warnings":[]} (nothing changes, even if the definition differs)
         SHOW|LIST STREAMS/TABLES/QUERIES [EXTENDED]: {"@type":"streams"|"tables"|"queries", ...}
         DESCRIBE x: {"@type":"sourceDescription","sourceDescription":{...}}
         EXPLAIN <CREATE ... AS SELECT> | EXPLAIN <query id>: {"@type":"queryDescription","statementText",
                                 "queryDescription":{"id","statementText","fields","sources","sinks",...}}
                                 (ksqlDB's ExplainExecutor runs the CREATE in a sandbox: the CREATE's own
                                 accept/reject, no command, no sequence number, nothing changes; refused:
                                 "does not run a ksql query" without AS SELECT, "did not run a ksql query"
                                 for IF NOT EXISTS on an existing name)
      -> 400 {"@type":"statement_error","error_code":40001,"message","statementText","entities":[before]}
         (40002 for SELECT/PRINT: "use the /query endpoint")
      -> 503 {"@type":"generic_error","error_code":50302,"message"} + Retry-After: 10 while initializing
  GET /status/<commandId> -> {"status","message","queryId"}; 404 error_code 40400 when unknown
  GET /healthcheck -> 200 {"isHealthy":true,"details":{...}} | 503 {"isHealthy":false,...}
  GET /info -> {"KsqlServerInfo":{"version":"0.29.0","kafkaClusterId","ksqlServiceId","serverStatus"}}

Semantics kept in a catalog of streams, tables, persistent queries and topics:
  * CREATE needs the FROM/JOIN sources to exist, and (without AS SELECT) the topic to exist unless
    PARTITIONS is given; AS SELECT creates its sink topic and a query CSAS_<NAME>_<n>/CTAS_<NAME>_<n>.
  * Existing name: IF NOT EXISTS -> warning_entity; plain CREATE -> 40001 "already exists";
    OR REPLACE -> upgraded in place (query id kept) unless ksqlDB refuses: SOURCE objects, other kind,
    joins ("Upgrades not yet supported for StreamTableJoin"/"TableTableJoin"), windowed queries, table
    aggregations, stream aggregations whose projection changes, removed/renamed/reordered columns
    ("Cannot upgrade data source: ... not upgradeable ...").
  * DROP: 40001 while streams/tables created from it exist ("You need to drop them") or other queries
    read/write it ("You need to terminate them"); its own CSAS/CTAS query is terminated with it.
    DELETE TOPIC removes the topic and is recorded in ``deleted_topics``.
  * TERMINATE <id> | ALL.
  * A table aggregation refuses MIN/MAX/LATEST_BY_OFFSET/... ("The aggregation function(s) ... cannot be
    applied to a table source, only to a stream source.", SchemaKGroupedTable in ksqlDB).
Test knobs: ``initializing`` (50302 answers, unhealthy /healthcheck), ``healthy``, ``fail_next`` (per
coming /ksql request: an HTTP status to fail it with, or None to serve it), ``queue_next`` (the next N commands answer QUEUED and finish only after
``polls_to_finish`` GETs of /status, or when a later request passes their commandSequenceNumber),
``requests`` (every request: method, path, headers, JSON body). A busy command runner:
``command_seconds`` (each command stays EXECUTING that long, one after the other) and ``occupy_runner(s)``
(someone else's long command); meanwhile /healthcheck is 503 with ``commandRunner`` unhealthy, /info 200,
and a request naming a commandSequenceNumber not yet executed waits ``catchup_timeout`` (5 s) for it, then
503 ``50303`` "Timed out while waiting for a previous command to execute".
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTENT_TYPE = "application/vnd.ksql.v1+json"
ACCEPTED_TYPES = {CONTENT_TYPE, "application/json"}


class KsqlStatementError(Exception):
    def __init__(self, message: str, code: int = 40001):
        super().__init__(message)
        self.code = code


# ---- a small lexer/parser of its own -------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?\*/
    |(?P<str>'(?:[^']|'')*')
    |(?P<qid>`(?:[^`]|``)*`|"(?:[^"]|"")*")
    |(?P<word>[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d+)?)
    |(?P<sym>[(),;=<>*.+\-/:!\[\]{}|%])""",
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Tok:
    kind: str
    text: str

    @property
    def up(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        if self.kind == "qid":
            q = self.text[0]
            return self.text[1:-1].replace(q + q, q)
        return self.text.upper()

    @property
    def string(self) -> str:
        return self.text[1:-1].replace("''", "'")


def lex(text: str) -> list[Tok]:
    out: list[Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise KsqlStatementError(f"line 1:{pos + 1}: token recognition error at: '{text[pos]}'")
        pos = m.end()
        if m.lastgroup:
            out.append(Tok(m.lastgroup, m.group()))
    return out


def split_statements(text: str) -> list[tuple[str, list[Tok]]]:
    """(statement text, tokens) per statement; the statement text keeps its ';'."""
    toks: list[tuple[Tok, int, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise KsqlStatementError(f"token recognition error at: '{text[pos]}'")
        if m.lastgroup:
            toks.append((Tok(m.lastgroup, m.group()), m.start(), m.end()))
        pos = m.end()
    statements: list[tuple[str, list[Tok]]] = []
    current: list[tuple[Tok, int, int]] = []
    for tok, start, end in toks:
        if tok.kind == "sym" and tok.text == ";":
            if current:
                statements.append((text[current[0][1]:end].strip(), [t for t, _, _ in current]))
            current = []
        else:
            current.append((tok, start, end))
    if current:
        statements.append((text[current[0][1]:].strip(), [t for t, _, _ in current]))
    return statements


def _close(toks: list[Tok], i: int) -> int:
    depth = 0
    for k in range(i, len(toks)):
        if toks[k].kind == "sym" and toks[k].text == "(":
            depth += 1
        elif toks[k].kind == "sym" and toks[k].text == ")":
            depth -= 1
            if depth == 0:
                return k
    raise KsqlStatementError("line 1:1: mismatched input: missing ')'")


def top_split(toks: list[Tok]) -> list[list[Tok]]:
    parts: list[list[Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "sym" and t.text in "([<":
            depth += 1
        elif t.kind == "sym" and t.text in ")]>":
            depth -= 1
        if t.kind == "sym" and t.text == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


@dataclass
class Create:
    kind: str
    name: str
    or_replace: bool
    if_not_exists: bool
    source: bool
    columns: list[str]
    key_columns: list[str]
    props: dict[str, str]
    query: bool
    sources: list[str]
    joins: bool
    grouped: bool
    windowed: bool
    projection: str  # canonical text of the SELECT list
    where_columns: set[str] = field(default_factory=set)  # column names the WHERE clause references
    selected_columns: set[str] = field(default_factory=set)  # column names the SELECT list references
    functions: list[str] = field(default_factory=list)  # function names called in the SELECT list, in order


def parse_create(toks: list[Tok]) -> Create:
    i = 1
    or_replace = source = if_not_exists = False
    if [t.up for t in toks[1:3]] == ["OR", "REPLACE"]:
        or_replace, i = True, 3
    if i < len(toks) and toks[i].up == "SOURCE":
        source, i = True, i + 1
    if i >= len(toks) or toks[i].up not in {"STREAM", "TABLE"}:
        raise KsqlStatementError("line 1:8: mismatched input expecting {'STREAM', 'TABLE', ...}")
    kind = toks[i].up
    i += 1
    if [t.up for t in toks[i:i + 3]] == ["IF", "NOT", "EXISTS"]:
        if_not_exists, i = True, i + 3
    if or_replace and if_not_exists:
        raise KsqlStatementError("Cannot set both OR REPLACE and IF NOT EXISTS.")
    if i >= len(toks) or toks[i].kind not in {"word", "qid"}:
        raise KsqlStatementError("line 1:1: missing source name")
    name = toks[i].name
    i += 1
    columns: list[str] = []
    keys: list[str] = []
    if i < len(toks) and toks[i].text == "(":
        j = _close(toks, i)
        for part in top_split(toks[i + 1:j]):
            col = part[0].name
            ups = [t.up for t in part]
            if ups[-1] == "KEY":
                keys.append(col)
            else:
                columns.append(col)
        i = j + 1
    props: dict[str, str] = {}
    if i < len(toks) and toks[i].up == "WITH":
        j = _close(toks, i + 1)
        for part in top_split(toks[i + 2:j]):
            if len(part) != 3 or part[1].text != "=":
                raise KsqlStatementError("line 1:1: mismatched input in WITH clause")
            props[part[0].text.upper()] = part[2].string if part[2].kind == "str" else part[2].text
        i = j + 1
    query = False
    sources: list[str] = []
    joins = grouped = windowed = False
    projection = ""
    where_columns: set[str] = set()
    selected_columns: set[str] = set()
    functions: list[str] = []
    if i < len(toks) and toks[i].up == "AS":
        query = True
        body = toks[i + 1:]
        if not body or body[0].up != "SELECT":
            raise KsqlStatementError("line 1:1: mismatched input 'AS' expecting SELECT")
        ups = [t.up for t in body]
        try:
            from_at = ups.index("FROM")
        except ValueError:
            raise KsqlStatementError("line 1:1: missing FROM") from None
        select_list = body[1:from_at]
        projection = " ".join(t.text for t in select_list)
        for k, u in enumerate(ups):
            if u in {"FROM", "JOIN"} and k + 1 < len(body):
                sources.append(body[k + 1].name)
            joins = joins or u == "JOIN"
            windowed = windowed or u == "WINDOW"
            grouped = grouped or (u == "GROUP" and k + 1 < len(ups) and ups[k + 1] == "BY")
        selected_columns = _column_refs(select_list)
        functions = [t.up for k, t in enumerate(select_list)
                     if t.kind == "word" and k + 1 < len(select_list) and select_list[k + 1].text == "("]
        if "WHERE" in ups:
            w = ups.index("WHERE")
            end = next((k for k in range(w + 1, len(ups)) if ups[k] in _CLAUSE_END), len(ups))
            where_columns = _column_refs(body[w + 1:end])
        columns = []
        for item in top_split(select_list):
            if len(item) >= 2 and item[-2].up == "AS":
                columns.append(item[-1].name)
            else:
                columns.append(item[-1].name)
    elif i < len(toks):
        raise KsqlStatementError(f"line 1:1: extraneous input '{toks[i].text}'")
    return Create(kind, name, or_replace, if_not_exists, source, columns, keys, props, query, sources, joins,
                  grouped, windowed, projection, where_columns, selected_columns, functions)


# Aggregate functions without an undo (not TableAggregationFunction): refused on a table source.
STREAM_ONLY_AGGREGATES = frozenset({"MIN", "MAX", "LATEST_BY_OFFSET", "EARLIEST_BY_OFFSET", "TOPK", "TOPKDISTINCT"})
_CLAUSE_END = frozenset({"GROUP", "EMIT", "PARTITION", "WINDOW", "HAVING"})
_NOT_COLUMNS = frozenset({"AND", "OR", "NOT", "IS", "NULL", "IN", "LIKE", "BETWEEN", "TRUE", "FALSE", "CASE", "WHEN",
                "THEN", "ELSE", "END", "AS", "CAST", "DISTINCT"})


def _column_refs(toks: list[Tok]) -> set[str]:
    """Names that look like column references (not keywords, literals or function names)."""
    refs = set()
    for k, t in enumerate(toks):
        if t.kind not in {"word", "qid"} or (t.kind == "word" and (t.up in _NOT_COLUMNS or t.text[0].isdigit())):
            continue
        if k + 1 < len(toks) and toks[k + 1].text in {"(", "."}:
            continue  # a function name or a qualifier
        refs.add(t.name)
    return refs


# ---- the catalog -------------------------------------------------------------------------------------


@dataclass
class DataSource:
    kind: str
    name: str
    topic: str
    statement: str
    create: Create
    created_from: set[str] = field(default_factory=set)

    @property
    def value_format(self) -> str:
        return self.create.props.get("VALUE_FORMAT", self.create.props.get("FORMAT", "JSON")).upper()

    @property
    def key_format(self) -> str:
        return self.create.props.get("KEY_FORMAT", self.create.props.get("FORMAT", "KAFKA")).upper()


@dataclass
class Query:
    id: str
    sink: str
    sources: list[str]
    statement: str
    properties: dict[str, Any]
    state: str = "RUNNING"


@dataclass
class Command:
    id: str
    sequence: int
    message: str
    query_id: str | None
    apply: Any  # callable applying the change, or None once applied
    polls_left: int
    ready_at: float | None = None  # busy command runner: applied once the clock passes this (monotonic)

    @property
    def status(self) -> str:
        if self.apply is None:
            return "SUCCESS"
        return "EXECUTING" if self.ready_at is not None else "QUEUED"


class KsqlDbDouble:
    def __init__(self, topics: set[str] | None = None) -> None:
        self.lock = threading.RLock()
        self.topics: set[str] = set(topics or ())
        self.deleted_topics: list[str] = []
        self.sources: dict[str, DataSource] = {}
        self.queries: dict[str, Query] = {}
        self.commands: dict[str, Command] = {}
        self.sequence = 0
        self.requests: list[dict[str, Any]] = []
        self.executed: list[str] = []  # statement texts that changed the catalog, in order
        self.created: list[str] = []  # names of the streams/tables created or replaced, in order
        self.initializing = False
        self.healthy = True
        self.fail_next: list[int | None] = []  # per /ksql request: an HTTP status to fail with, or None
        self.queue_next = 0
        self.polls_to_finish = 2
        self.command_seconds = 0.0  # > 0: every command stays EXECUTING this long (one at a time)
        self.catchup_timeout = 5.0  # how long a request waits for the commandSequenceNumber it names
        self._runner_free_at = 0.0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KsqlDbDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- test helpers ---------------------------------------------------------------------------------
    def occupy_runner(self, seconds: float) -> None:
        """The command runner executes someone else's long command (a CREATE OR REPLACE took ~38 s on a
        real 0.29) for ``seconds``: /healthcheck answers 503 with commandRunner unhealthy, /info 200, and
        new commands queue behind it."""
        with self.lock:
            self._runner_free_at = max(time.monotonic(), self._runner_free_at) + seconds

    @property
    def runner_busy(self) -> bool:
        with self.lock:
            self._tick()
            return time.monotonic() < self._runner_free_at or any(
                c.apply is not None and c.ready_at is not None for c in self.commands.values())

    def ksql_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/ksql"]

    def writers(self, name: str) -> list[Query]:
        return [q for q in self.queries.values() if q.sink == name]

    def terminate_behind_the_back(self, name: str) -> None:
        """What an admin does by hand: TERMINATE the query writing ``name``."""
        with self.lock:
            for q in self.writers(name):
                del self.queries[q.id]

    def drop_behind_the_back(self, name: str) -> None:
        """What an admin does by hand: drop ``name`` (and everything created from it, and its queries)."""
        with self.lock:
            for other in [s for s in self.sources.values() if name in s.created_from]:
                self.drop_behind_the_back(other.name)
            for q in [q for q in self.queries.values() if q.sink == name or name in q.sources]:
                del self.queries[q.id]
            self.sources.pop(name, None)

    # -- statements -----------------------------------------------------------------------------------
    def _next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def _status_entity(self, text: str, command_id: str, message: str, query_id: str | None,
                       apply: Any) -> dict[str, Any]:
        seq = self._next_sequence()
        queued = self.queue_next > 0
        ready_at = None
        if queued:
            self.queue_next -= 1
        elif self.command_seconds > 0 or self._runner_free_at > time.monotonic():
            queued = True  # the runner executes commands one after the other
            ready_at = max(time.monotonic(), self._runner_free_at) + self.command_seconds
            self._runner_free_at = ready_at
        cmd = Command(command_id, seq, message, query_id, apply if queued else None, self.polls_to_finish, ready_at)
        if not queued:
            apply()
        self.commands[command_id] = cmd
        return {
            "@type": "currentStatus",
            "statementText": text,
            "commandId": command_id,
            "commandStatus": {"status": cmd.status, "message": message if not queued else "Statement written to command topic",
                              "queryId": query_id},
            "commandSequenceNumber": seq,
            "warnings": [],
        }

    def _finish_up_to(self, sequence: int) -> None:
        """Poll-counted commands (``queue_next``) up to ``sequence`` finish now; timed ones keep their time."""
        for cmd in sorted(self.commands.values(), key=lambda c: c.sequence):
            if cmd.apply is not None and cmd.ready_at is None and cmd.sequence <= sequence:
                cmd.apply()
                cmd.apply = None

    def _tick(self) -> None:
        """Apply the timed commands whose execution time has passed, in sequence order."""
        now = time.monotonic()
        for cmd in sorted(self.commands.values(), key=lambda c: c.sequence):
            if cmd.apply is not None and cmd.ready_at is not None and cmd.ready_at <= now:
                cmd.apply()
                cmd.apply = None

    def _wait_for_sequence(self, sequence: int) -> bool:
        """What ksqlDB does with a request's commandSequenceNumber: wait (ksql.server.command.response
        timeout, 5 s) until the runner has executed that command; False when it has not by then."""
        deadline = time.monotonic() + self.catchup_timeout
        while True:
            with self.lock:
                self._tick()
                behind = any(c.apply is not None and c.ready_at is not None and c.sequence <= sequence
                             for c in self.commands.values())
            if not behind:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def run_statement(self, text: str, toks: list[Tok], props: dict[str, Any]) -> dict[str, Any] | None:
        head = toks[0].up
        ups = [t.up for t in toks]
        if head in {"SELECT", "PRINT"}:
            raise KsqlStatementError(
                "The following statement types should be issued to the websocket endpoint '/query': "
                "* PRINT * SELECT", 40002)
        if head in {"SET", "UNSET"}:
            if head == "SET" and len(toks) == 4 and toks[1].kind == "str" and toks[3].kind == "str":
                props[toks[1].string] = toks[3].string
                return None
            if head == "UNSET" and len(toks) == 2 and toks[1].kind == "str":
                props.pop(toks[1].string, None)
                return None
            raise KsqlStatementError("line 1:1: mismatched input in SET")
        if head in {"SHOW", "LIST"}:
            return self._show(text, ups)
        if head == "DESCRIBE":
            return self._describe(text, toks)
        if head == "CREATE":
            return self._create(text, toks, props)
        if head == "EXPLAIN":
            return self._explain(text, toks, props)
        if head == "DROP":
            return self._drop(text, toks)
        if head == "TERMINATE":
            return self._terminate(text, toks)
        raise KsqlStatementError(f"line 1:1: mismatched input '{toks[0].text}' expecting ...")

    def _show(self, text: str, ups: list[str]) -> dict[str, Any]:
        what = ups[1] if len(ups) > 1 else ""
        if what in {"STREAMS", "TABLES"}:
            kind = what[:-1]
            items = [
                {"type": kind, "name": s.name, "topic": s.topic, "keyFormat": s.key_format,
                 "valueFormat": s.value_format, "isWindowed": s.create.windowed}
                for s in sorted(self.sources.values(), key=lambda s: s.name) if s.kind == kind
            ]
            return {"@type": what.lower(), "statementText": text, what.lower(): items, "warnings": []}
        if what == "QUERIES":
            items = [
                {"queryString": q.statement, "sinks": [q.sink], "sinkKafkaTopics": [self.sources[q.sink].topic],
                 "id": q.id, "statusCount": {q.state: 1}, "queryType": "PERSISTENT", "state": q.state}
                for q in sorted(self.queries.values(), key=lambda q: q.id)
            ]
            return {"@type": "queries", "statementText": text, "queries": items, "warnings": []}
        raise KsqlStatementError(f"line 1:6: mismatched input '{what}'")

    def _describe(self, text: str, toks: list[Tok]) -> dict[str, Any]:
        name = toks[-1].name
        src = self.sources.get(name)
        if src is None:
            raise KsqlStatementError(f"Could not find STREAM/TABLE '{name}' in the Metastore")
        return {"@type": "sourceDescription", "statementText": text, "sourceDescription": {
            "name": src.name, "type": src.kind, "topic": src.topic, "statement": src.statement,
            "keyFormat": src.key_format, "valueFormat": src.value_format,
            "readQueries": [{"id": q.id} for q in self.queries.values() if src.name in q.sources],
            "writeQueries": [{"id": q.id} for q in self.writers(src.name)],
            "fields": [{"name": c} for c in src.create.key_columns + src.create.columns],
        }, "warnings": []}

    def _refuse_upgrade(self, old: DataSource, new: Create) -> None:
        if old.create.source or new.source:
            raise KsqlStatementError(f"Cannot add {new.kind.lower()} '{new.name}': CREATE OR REPLACE is not "
                                     "supported on source streams or tables.")
        if old.kind != new.kind:
            raise KsqlStatementError(f"Cannot add {new.kind.lower()} '{new.name}': A {old.kind.lower()} with "
                                     "the same name already exists")
        if old.create.query != new.query:
            raise KsqlStatementError(f"Cannot upgrade data source: DataSource '`{new.name}`' changes from or "
                                     "to a query")
        if old.create.joins or new.joins:
            step = "StreamTableJoin" if new.kind == "STREAM" else "TableTableJoin"
            raise KsqlStatementError(f"Upgrades not yet supported for {step}")
        if old.create.windowed or new.windowed:
            raise KsqlStatementError("Upgrades not yet supported for StreamWindowedAggregate")
        if old.create.grouped or new.grouped:
            from_table = any(self.sources.get(s) is not None and self.sources[s].kind == "TABLE"
                             for s in new.sources)
            if from_table:
                raise KsqlStatementError("Upgrades not yet supported for TableAggregate")
            # ksqlDB keeps the aggregation's input schema: the projection must stay, and a filter may only
            # use columns the query already reads.
            old_in = old.create.selected_columns | old.create.where_columns
            new_in = new.selected_columns | new.where_columns
            if old.create.projection != new.projection or old_in != new_in:
                raise KsqlStatementError("StreamAggregate must have matching columns not part of aggregate. "
                                         f"Values differ: [{', '.join(sorted(old_in))}] vs. "
                                         f"[{', '.join(sorted(new_in))}]")
        if old.create.columns != new.columns[:len(old.create.columns)] or \
                old.create.key_columns != new.key_columns:
            raise KsqlStatementError(
                f"Cannot upgrade data source: DataSource '`{new.name}`' has schema = "
                f"{', '.join(old.create.key_columns + old.create.columns)} which is not upgradeable to "
                f"{', '.join(new.key_columns + new.columns)}. (The following columns are changed, missing "
                "or reordered: ...)")

    def _check_create(self, text: str, toks: list[Tok]) -> tuple[Create, DataSource | None, str] | dict[str, Any]:
        """Every check a CREATE passes through before it changes anything: the warning entity of an
        IF NOT EXISTS on an existing name, or (statement, the source it replaces, its topic)."""
        c = parse_create(toks)
        if c.or_replace and c.source:
            raise KsqlStatementError(f"Cannot add {c.kind.lower()} '{c.name}': CREATE OR REPLACE is not supported "
                                     "on source streams or tables.")
        for src in c.sources:
            if src not in self.sources:
                raise KsqlStatementError(f"{src} does not exist.")
        existing = self.sources.get(c.name)
        kind_word = c.kind.lower()
        if existing is not None:
            if c.if_not_exists:
                return {"@type": "warning_entity", "statementText": text,
                        "message": f"Cannot add {kind_word} {c.name}: A {existing.kind.lower()} with the same name "
                                   "already exists.", "warnings": []}
            if not c.or_replace:
                raise KsqlStatementError(f"Cannot add {kind_word} '{c.name}': A {existing.kind.lower()} with the "
                                         "same name already exists")
            self._refuse_upgrade(existing, c)
        self._check_aggregation(c)
        if c.query:
            topic = c.props.get("KAFKA_TOPIC", c.name)
        else:
            topic = c.props.get("KAFKA_TOPIC", "")
            if not topic:
                raise KsqlStatementError("Missing required property \"KAFKA_TOPIC\" which has no default value.")
            if topic not in self.topics and "PARTITIONS" not in c.props:
                raise KsqlStatementError(
                    f"Topic '{topic}' does not exist. If you want to create a new topic for the {kind_word} please "
                    f"re-run the statement providing the required 'PARTITIONS' configuration in the WITH clause "
                    "(and optionally 'REPLICAS'). For example: CREATE STREAM FOO (ID STRING KEY, ...) WITH "
                    "(KAFKA_TOPIC='foo', PARTITIONS=2, ...).")
        return c, existing, topic

    def _check_aggregation(self, c: Create) -> None:
        """ksqlDB's table aggregation accepts only undoable aggregates (SchemaKGroupedTable.aggregate)."""
        if not c.grouped or not any(self.sources.get(s) is not None and self.sources[s].kind == "TABLE"
                                    for s in c.sources):
            return
        bad = list(dict.fromkeys(f for f in c.functions if f in STREAM_ONLY_AGGREGATES))
        if bad:
            names = bad[0] if len(bad) == 1 else ", ".join(bad[:-1]) + " and " + bad[-1]
            raise KsqlStatementError(f"The aggregation function{'s' if len(bad) > 1 else ''} {names} cannot be "
                                     "applied to a table source, only to a stream source.")

    def _query_id(self, c: Create, existing: DataSource | None) -> str | None:
        if not c.query:
            return None
        query_id = existing and next((q.id for q in self.writers(c.name)), None)
        return query_id or f"{'CSAS' if c.kind == 'STREAM' else 'CTAS'}_{c.name}_{self.sequence + 1}"

    def _create(self, text: str, toks: list[Tok], props: dict[str, Any]) -> dict[str, Any]:
        checked = self._check_create(text, toks)
        if isinstance(checked, dict):
            return checked
        c, existing, topic = checked
        query_id = self._query_id(c, existing)
        created_from = set(c.sources)

        def apply() -> None:
            self.topics.add(topic)
            self.sources[c.name] = DataSource(c.kind, c.name, topic, text, c, created_from)
            if query_id:
                self.queries[query_id] = Query(query_id, c.name, list(c.sources), text, dict(props))
            self.executed.append(text)
            self.created.append(c.name)

        message = f"Created query with ID {query_id}" if c.query else f"{c.kind.capitalize()} created"
        return self._status_entity(text, f"{c.kind.lower()}/`{c.name}`/create", message, query_id, apply)

    def _explain(self, text: str, toks: list[Tok], props: dict[str, Any]) -> dict[str, Any]:
        """EXPLAIN <query id> | EXPLAIN <CREATE ... AS SELECT>: the latter runs the CREATE's checks in a
        sandbox (ksqlDB's ExplainExecutor: executionContext.createSandbox(...).execute(...)) - the same
        accept/reject as the CREATE, no command, no sequence number, nothing changes."""
        inner = toks[1:]
        if not inner:
            raise KsqlStatementError("line 1:8: mismatched input '<EOF>'")
        if inner[0].up != "CREATE":
            query_id = inner[0].name if inner[0].kind == "qid" else inner[0].text
            query = self.queries.get(query_id)
            if query is None or len(inner) != 1:
                raise KsqlStatementError(f"Query with id:{query_id} does not exist, use SHOW QUERIES to view the "
                                         "full set of queries.")
            return self._query_description(text, query.id, query.statement, self.sources[query.sink].create,
                                            query.sources, query.sink, query.properties, query.state)
        inner_text = text[text.upper().index("CREATE"):]
        if not parse_create(inner).query:
            raise KsqlStatementError("The provided statement does not run a ksql query")
        checked = self._check_create(inner_text, inner)
        if isinstance(checked, dict):
            # IF NOT EXISTS on an existing name: the sandbox runs no query, ExplainExecutor refuses it
            raise KsqlStatementError("The provided statement did not run a ksql query")
        c, existing, _ = checked
        query_id = self._query_id(c, existing) or ""
        return self._query_description(text, query_id, inner_text, c, list(c.sources), c.name, props, None)

    @staticmethod
    def _query_description(text: str, query_id: str, statement: str, c: Create, sources: list[str], sink: str,
                           props: dict[str, Any], state: str | None) -> dict[str, Any]:
        description: dict[str, Any] = {
            "id": query_id, "statementText": statement, "windowType": "TUMBLING" if c.windowed else None,
            "fields": [{"name": n, "schema": {"type": "STRING"}} for n in c.key_columns + c.columns],
            "sources": sorted(set(sources)), "sinks": [sink], "topology": "(double: no Kafka Streams topology)",
            "executionPlan": statement, "overriddenProperties": dict(props), "ksqlHostQueryStatus": {},
        }
        if state is not None:
            description["state"] = state
        return {"@type": "queryDescription", "statementText": text, "queryDescription": description, "warnings": []}

    def _drop(self, text: str, toks: list[Tok]) -> dict[str, Any]:
        ups = [t.up for t in toks]
        if len(ups) < 3 or ups[1] not in {"STREAM", "TABLE"}:
            raise KsqlStatementError("line 1:6: mismatched input expecting {'STREAM', 'TABLE', ...}")
        kind = ups[1]
        i = 2
        if_exists = ups[2:4] == ["IF", "EXISTS"]
        if if_exists:
            i = 4
        name = toks[i].name
        delete_topic = ups[i + 1:i + 3] == ["DELETE", "TOPIC"]
        src = self.sources.get(name)
        if src is None:
            if if_exists:
                return self._status_entity(text, f"{kind.lower()}/`{name}`/drop",
                                           f"Source `{name}` does not exist.", None, lambda: None)
            raise KsqlStatementError(f"{kind.capitalize()} {name} does not exist.")
        if src.kind != kind:
            raise KsqlStatementError(f"Incompatible data source type is {src.kind}, but statement was DROP {kind}. "
                                     f"Did you mean DROP {src.kind}?")
        created_from_it = sorted(s.name for s in self.sources.values() if name in s.created_from)
        if created_from_it:
            raise KsqlStatementError(
                f"Cannot drop {name}.\nThe following streams and/or tables read from this source: "
                f"[{', '.join(created_from_it)}].\nYou need to drop them before dropping {name}.")
        own = {q.id for q in self.writers(name) if q.statement == src.statement}
        readers = sorted(q.id for q in self.queries.values() if name in q.sources)
        other_writers = sorted(q.id for q in self.writers(name) if q.id not in own)
        if readers or other_writers:
            raise KsqlStatementError(
                f"Cannot drop {name}.\nThe following queries read from this source: [{', '.join(readers)}].\n"
                f"The following queries write into this source: [{', '.join(other_writers)}].\n"
                f"You need to terminate them before dropping {name}.")

        def apply() -> None:
            for qid in own:
                self.queries.pop(qid, None)
            self.sources.pop(name, None)
            if delete_topic:
                self.topics.discard(src.topic)
                self.deleted_topics.append(src.topic)
            self.executed.append(text)

        message = f"Source `{name}` (topic: {src.topic}) was dropped."
        return self._status_entity(text, f"{kind.lower()}/`{name}`/drop", message, None, apply)

    def _terminate(self, text: str, toks: list[Tok]) -> dict[str, Any]:
        if len(toks) < 2:
            raise KsqlStatementError("line 1:10: missing query id")
        target = toks[1].text if toks[1].kind != "qid" else toks[1].name
        if target.upper() == "ALL":
            ids = list(self.queries)
        elif target in self.queries:
            ids = [target]
        else:
            raise KsqlStatementError(f"Unknown queryId: {target}")

        def apply() -> None:
            for qid in ids:
                self.queries.pop(qid, None)
            self.executed.append(text)

        return self._status_entity(text, f"terminate/{target}/execute", "Query terminated.", None, apply)

    def ksql(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        seq = body.get("commandSequenceNumber")
        if isinstance(seq, int) and not self.initializing and not self._wait_for_sequence(seq):
            return 503, {"@type": "generic_error", "error_code": 50303,
                         "message": "Timed out while waiting for a previous command to execute. "
                                    f"command sequence number: {seq}"}, {}
        with self.lock:
            self._tick()
            if self.initializing:
                return 503, {"@type": "generic_error", "error_code": 50302,
                             "message": "Failed to initialize the ksqlDB server"}, {"Retry-After": "10"}
            status = self.fail_next.pop(0) if self.fail_next else None
            if status is not None:
                return status, {"@type": "generic_error", "error_code": status * 100,
                                "message": f"injected failure {status}"}, {}
            if isinstance(seq, int):
                self._finish_up_to(seq)
            props = dict(body.get("streamsProperties") or {})
            entities: list[dict[str, Any]] = []
            text = str(body.get("ksql", ""))
            try:
                statements = split_statements(text)
            except KsqlStatementError as exc:
                return 400, {"@type": "statement_error", "error_code": exc.code, "message": str(exc),
                             "statementText": text, "entities": []}, {}
            for stmt_text, toks in statements:
                try:
                    entity = self.run_statement(stmt_text, toks, props)
                except KsqlStatementError as exc:
                    return 400, {"@type": "statement_error", "error_code": exc.code, "message": str(exc),
                                 "statementText": stmt_text, "entities": entities}, {}
                if entity is not None:
                    entities.append(entity)
            return 200, entities, {}

    def status(self, command_id: str) -> tuple[int, Any]:
        with self.lock:
            cmd = self.commands.get(command_id)
            if cmd is None:
                return 404, {"@type": "generic_error", "error_code": 40400,
                             "message": f"Command {command_id} not found"}
            self._tick()
            if cmd.apply is not None and cmd.ready_at is not None:
                return 200, {"status": "EXECUTING", "message": "Executing statement", "queryId": None}
            if cmd.apply is not None:
                cmd.polls_left -= 1
                if cmd.polls_left <= 0:
                    self._finish_up_to(cmd.sequence)
                else:
                    return 200, {"status": "EXECUTING", "message": "Executing statement", "queryId": None}
            return 200, {"status": cmd.status, "message": cmd.message, "queryId": cmd.query_id}

    # -- HTTP ---------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: Any) -> None:
                with double.lock:
                    double.requests.append({"method": self.command, "path": urllib.parse.urlsplit(self.path).path,
                                            "headers": dict(self.headers), "body": body})

            def do_GET(self) -> None:  # noqa: N802
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                self._record(None)
                if path == "/healthcheck":
                    up = double.healthy and not double.initializing
                    # a long command makes the command runner unhealthy (and so the whole check), while
                    # the server keeps answering everything else, /info included
                    runner = up and not double.runner_busy
                    self._reply(200 if runner else 503, {
                        "isHealthy": runner,
                        "details": {"metastore": {"isHealthy": up}, "kafka": {"isHealthy": double.healthy},
                                    "commandRunner": {"isHealthy": runner}},
                        "serverState": "INITIALIZING" if double.initializing else "READY"})
                elif path == "/info":
                    self._reply(200, {"KsqlServerInfo": {
                        "version": "0.29.0", "kafkaClusterId": "double-cluster", "ksqlServiceId": "default_",
                        "serverStatus": "RUNNING" if not double.initializing else "INITIALIZING"}})
                elif path.startswith("/status/"):
                    status, body = double.status(path[len("/status/"):])
                    self._reply(status, body)
                else:
                    self._reply(404, {"@type": "generic_error", "error_code": 40400, "message": "Not found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                self._record(body)
                path = urllib.parse.urlsplit(self.path).path
                if path != "/ksql":
                    self._reply(404, {"@type": "generic_error", "error_code": 40400, "message": "Not found"})
                    return
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype not in ACCEPTED_TYPES:
                    self._reply(415, {"@type": "generic_error", "error_code": 41500,
                                      "message": f"unsupported content type {ctype!r}"})
                    return
                if not isinstance(body, dict) or "ksql" not in body:
                    self._reply(400, {"@type": "generic_error", "error_code": 40000,
                                      "message": "request body must be a JSON object with 'ksql'"})
                    return
                status, reply, headers = double.ksql(body)
                self._reply(status, reply, headers)

        return Handler
