"""A small client for the ksqlDB 0.29 REST API (``/ksql``, ``/status``, ``/healthcheck``, ``/info``)
and for the one Schema Registry lookup the operator makes.

Errors are sorted by what the caller should do about them:

* :class:`Unavailable` - ksqlDB (or the registry) cannot answer now: unreachable, timing out, 5xx,
  ``50302`` while initializing (``retry_after`` from ``Retry-After``). Retry later, with backoff.
* :class:`StatementFailed` - ksqlDB rejected the statement (``statement_error``, e.g. ``40001``) or
  its command ended in ``ERROR``/``TERMINATED``. Retrying the same statement cannot help.
* :class:`RequestRejected` - any other 4xx (authentication, wrong endpoint, ...): a configuration
  problem, not a statement problem; also permanent.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

CONTENT_TYPE = "application/vnd.ksql.v1+json"
FINAL_STATUSES = {"SUCCESS", "ERROR", "TERMINATED"}
FAILED_STATUSES = {"ERROR", "TERMINATED"}


class KsqlError(Exception):
    pass


class Unavailable(KsqlError):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class StatementFailed(KsqlError):
    def __init__(self, message: str, error_code: int | None = None, statement: str = ""):
        super().__init__(message)
        self.error_code = error_code
        self.statement = statement


class RequestRejected(KsqlError):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Outcome:
    """What one executed statement did."""

    status: str  # SUCCESS | WARNING (IF NOT EXISTS on an existing name: nothing changed)
    message: str
    command_id: str = ""
    sequence: int | None = None
    query_id: str | None = None


@dataclass(frozen=True)
class LiveSource:
    name: str
    kind: str  # STREAM | TABLE
    topic: str


@dataclass(frozen=True)
class LiveQuery:
    id: str
    sinks: tuple[str, ...]
    state: str  # RUNNING | ERROR | ... (ksqlDB's state; may be "" on old servers)
    query_string: str = ""


@dataclass(frozen=True)
class Catalog:
    """What the server has: SHOW STREAMS / SHOW TABLES / SHOW QUERIES."""

    sources: Mapping[str, LiveSource] = field(default_factory=dict)
    queries: tuple[LiveQuery, ...] = ()

    def writers(self, name: str) -> list[LiveQuery]:
        return [q for q in self.queries if name in q.sinks]

    def has(self, name: str) -> bool:
        return name in self.sources


@dataclass(frozen=True)
class Health:
    healthy: bool
    detail: str


def _retry_after(resp: requests.Response) -> float | None:
    raw = resp.headers.get("Retry-After")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _json(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


class KsqlClient:
    """Thread-safe: the last command sequence number is shared by everyone using the client, so a
    statement never runs before the commands this client saw complete (``commandSequenceNumber``)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, command_timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.command_timeout = command_timeout
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._sequence: int | None = None
        # Commands still non-final when we stopped following them (statement + properties -> command
        # id): asking again for the same statement follows that command instead of issuing it twice.
        self._pending: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, Any]] = {}

    # -- plumbing --------------------------------------------------------------------------------------
    @property
    def last_sequence(self) -> int | None:
        return self._sequence

    def _remember(self, sequence: Any) -> None:
        if isinstance(sequence, int) and sequence >= 0:
            with self._lock:
                self._sequence = sequence if self._sequence is None else max(self._sequence, sequence)

    def _request(self, method: str, path: str, body: Any = None) -> requests.Response:
        url = self.base_url + path
        try:
            return requests.request(
                method, url, json=body, timeout=self.timeout,
                headers={"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE},
            )
        except requests.RequestException as exc:
            raise Unavailable(f"ksqlDB at {self.base_url} unreachable: {type(exc).__name__}: {exc}") from None

    def _raise_for(self, resp: requests.Response, statement: str = "") -> None:
        if resp.status_code < 400:
            return
        body = _json(resp)
        code = body.get("error_code") if isinstance(body, dict) else None
        message = (body.get("message") if isinstance(body, dict) else None) or resp.text[:300] or resp.reason
        if resp.status_code >= 500 or code == 50302:
            raise Unavailable(f"ksqlDB answered {resp.status_code} ({code}): {message}", _retry_after(resp))
        if isinstance(body, dict) and body.get("@type") == "statement_error" or resp.status_code == 400:
            raise StatementFailed(str(message), code if isinstance(code, int) else None,
                                  (body or {}).get("statementText", statement) if isinstance(body, dict) else statement)
        raise RequestRejected(f"ksqlDB answered {resp.status_code} ({code}): {message}", resp.status_code)

    def post_ksql(self, ksql: str, properties: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"ksql": ksql, "streamsProperties": dict(properties or {})}
        if self._sequence is not None:
            body["commandSequenceNumber"] = self._sequence
        resp = self._request("POST", "/ksql", body)
        self._raise_for(resp, ksql)
        entities = _json(resp)
        if not isinstance(entities, list):
            raise Unavailable(f"ksqlDB answered /ksql with a non-list body: {resp.text[:200]}")
        for entity in entities:
            if isinstance(entity, dict):
                self._remember(entity.get("commandSequenceNumber"))
        return entities

    # -- API -------------------------------------------------------------------------------------------
    def ready(self) -> Health:
        """Whether ksqlDB answers requests: GET /info (never raises).

        Not /healthcheck: that one reports 503 (``commandRunner`` unhealthy) for as long as the command
        runner executes a long command (a CREATE OR REPLACE took ~38 s on 0.29), while /ksql and
        /status keep answering - exactly when the operator should wait for its command, not back off."""
        try:
            resp = self._request("GET", "/info")
        except Unavailable as exc:
            return Health(False, str(exc))
        body = _json(resp)
        info = body.get("KsqlServerInfo") if isinstance(body, dict) else None
        if resp.status_code != 200 or not isinstance(info, dict):
            code = body.get("error_code") if isinstance(body, dict) else None
            return Health(False, f"ksqlDB at {self.base_url} answered /info with {resp.status_code}"
                                 f"{f' ({code})' if code else ''}: {resp.text[:200]!r}")
        status = str(info.get("serverStatus") or "RUNNING")
        if status != "RUNNING":
            return Health(False, f"ksqlDB at {self.base_url} is {status}")
        return Health(True, f"ksqlDB {info.get('version', '?')} {status}")

    def health(self) -> Health:
        """GET /healthcheck (diagnostics only: see :meth:`ready`); unreachable counts as unhealthy."""
        try:
            resp = self._request("GET", "/healthcheck")
        except Unavailable as exc:
            return Health(False, str(exc))
        body = _json(resp)
        if resp.status_code == 200 and isinstance(body, dict) and body.get("isHealthy") is True:
            return Health(True, "healthy")
        details = body.get("details") if isinstance(body, dict) else None
        failing = sorted(k for k, v in (details or {}).items() if isinstance(v, dict) and not v.get("isHealthy"))
        return Health(False, f"healthcheck {resp.status_code}: unhealthy {', '.join(failing) or '(no details)'}")

    def info(self) -> dict[str, Any]:
        resp = self._request("GET", "/info")
        self._raise_for(resp)
        body = _json(resp)
        return body.get("KsqlServerInfo", {}) if isinstance(body, dict) else {}

    def explain(self, statement: str, properties: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``EXPLAIN <statement>``: ksqlDB runs a CREATE ... AS SELECT in a sandbox and answers with a
        ``queryDescription``, or with the error the statement itself would get; nothing changes on the
        server (ksqlDB's ExplainExecutor). Returns the query description; raises StatementFailed."""
        entities = self.post_ksql("EXPLAIN " + statement, properties)
        entity = entities[0] if len(entities) == 1 and isinstance(entities[0], dict) else {}
        if entity.get("@type") != "queryDescription":
            raise StatementFailed(f"EXPLAIN answered {str(entities)[:200]}", None, statement)
        description = entity.get("queryDescription")
        return description if isinstance(description, dict) else {}

    def execute(self, statement: str, properties: Mapping[str, str] | None = None) -> Outcome:
        """Run ONE statement (terminated by ';') and follow its command to a final status.

        A command still QUEUED/EXECUTING after ``command_timeout`` raises Unavailable; executing the
        same statement again later follows that command at /status instead of sending it again."""
        key = (statement, tuple(sorted((properties or {}).items())))
        command_id, sequence = self._pending.get(key, (None, None))
        status: dict[str, Any] = {}
        if command_id is not None:
            try:
                status = self.command_status(command_id)
            except RequestRejected:  # unknown to this server (restarted): send the statement again
                command_id = None
                self._pending.pop(key, None)
        if command_id is None:
            entities = self.post_ksql(statement, properties)
            if len(entities) != 1 or not isinstance(entities[0], dict):
                raise StatementFailed(f"expected one result entity, got {len(entities)}", None, statement)
            entity = entities[0]
            kind = entity.get("@type")
            if kind == "warning_entity":
                return Outcome("WARNING", str(entity.get("message", "")))
            if kind != "currentStatus":
                # SHOW/DESCRIBE-like entities: nothing to follow.
                return Outcome("SUCCESS", str(entity.get("message", kind)))
            command_id = str(entity.get("commandId", ""))
            status = entity.get("commandStatus") or {}
            sequence = entity.get("commandSequenceNumber")
        deadline = self._clock() + self.command_timeout
        pause = 0.1
        while status.get("status") not in FINAL_STATUSES:
            if self._clock() >= deadline:
                self._pending[key] = (command_id, sequence)
                raise Unavailable(
                    f"command {command_id} still {status.get('status')} after {self.command_timeout:g}s"
                    " (ksqlDB's command runner is busy; following it again on the next attempt)"
                )
            self._sleep(pause)
            pause = min(pause * 2, 2.0)
            status = self.command_status(command_id)
        self._pending.pop(key, None)
        if status.get("status") in FAILED_STATUSES:
            raise StatementFailed(f"command {status.get('status')}: {status.get('message', '')}", None, statement)
        return Outcome("SUCCESS", str(status.get("message", "")), command_id,
                       sequence if isinstance(sequence, int) else None, status.get("queryId"))

    def command_status(self, command_id: str) -> dict[str, Any]:
        resp = self._request("GET", "/status/" + urllib.parse.quote(command_id, safe="/"))
        self._raise_for(resp)
        body = _json(resp)
        if not isinstance(body, dict):
            raise Unavailable(f"ksqlDB answered /status with {resp.text[:200]!r}")
        return body

    def catalog(self) -> Catalog:
        """The server's streams, tables and persistent queries (one request)."""
        entities = self.post_ksql("SHOW STREAMS; SHOW TABLES; SHOW QUERIES;")
        sources: dict[str, LiveSource] = {}
        queries: list[LiveQuery] = []
        for entity in entities:
            kind = entity.get("@type") if isinstance(entity, dict) else None
            if kind in {"streams", "tables"}:
                for item in entity.get(kind, []):
                    sources[item["name"]] = LiveSource(
                        item["name"], str(item.get("type", kind[:-1])).upper(), str(item.get("topic", ""))
                    )
            elif kind == "queries":
                for item in entity.get("queries", []):
                    queries.append(LiveQuery(str(item["id"]), tuple(item.get("sinks") or ()),
                                             str(item.get("state", "")), str(item.get("queryString", ""))))
        return Catalog(sources, tuple(queries))


class SubjectRegistry:
    """The one Schema Registry question the operator asks: does ``<topic>-value`` exist yet?"""

    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def subject_exists(self, subject: str) -> bool:
        url = f"{self.base_url}/subjects/{urllib.parse.quote(subject, safe='')}/versions/latest"
        try:
            resp = requests.get(url, timeout=self.timeout,
                                headers={"Accept": "application/vnd.schemaregistry.v1+json"})
        except requests.RequestException as exc:
            raise Unavailable(f"Schema Registry at {self.base_url} unreachable: {type(exc).__name__}") from None
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        raise Unavailable(f"Schema Registry answered {resp.status_code} for {subject}", _retry_after(resp))
