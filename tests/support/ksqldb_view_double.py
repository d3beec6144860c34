"""TEST DOUBLE of ksqlDB 0.29 serving the consolidated customer view (ksql/050-consolidated.sql) for
the engines tier's end-to-end runs (``make verify`` against the local stack). Not shipped.

No ksqlDB can run here. This double reads the three source topics from a REAL Kafka broker (Avro,
writer schemas by id from the registry), computes ``T_CUSTOMER_CONSOLIDATED`` per customer with the
semantics of ksql/ that our code relies on, writes each change as ksqlDB would (JSON to
``dom.customer.consolidated.v1``, keyed by customer id, in the partition a Java producer chooses:
murmur2) and answers pull queries on the table over ksqlDB's REST API (POST /query; GET /info).

Modelled (ksql/030, 040, 050): a row exists once a profile does (the view is built FROM the profile
table; orders or activations of an unknown customer wait for it); the latest profile version wins;
orders counted and summed once per ``order_id`` (the latest total wins); activations counted per
``activation_id`` by their latest status (failed = failed + bounced); ``last_order_at`` only once an
order counts; ``last_engagement_at`` = newest delivered time. Pull queries: only
``SELECT * FROM T_CUSTOMER_CONSOLIDATED WHERE `customer_key` = '<id>';`` (what verify asks), answered
as ksqlDB 0.29 does on /query: a JSON array of a ``header`` (queryId, schema) and zero or one ``row``;
any other statement is refused with a ``statement_error`` (40001), as a real server refuses SQL it
cannot run. Not modelled: intermediate rows from the joins racing each other (see ksql/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas import serde, topics
from schemas.partitioning import LIBRDKAFKA_PARTITIONER

TABLE = "T_CUSTOMER_CONSOLIDATED"
COLUMNS = ("customer_key", "customer_id", "first_name", "last_name", "email", "phone", "lifecycle_stage",
           "is_active", "created_at", "profile_updated_at", "lifetime_value", "order_count", "last_order_at",
           "activations_delivered", "activations_failed", "activations_bounced", "last_engagement_at")
SCHEMA = ("`customer_key` STRING KEY, `customer_id` STRING, `first_name` STRING, `last_name` STRING, "
          "`email` STRING, `phone` STRING, `lifecycle_stage` STRING, `is_active` BOOLEAN, `created_at` BIGINT, "
          "`profile_updated_at` BIGINT, `lifetime_value` DOUBLE, `order_count` BIGINT, `last_order_at` BIGINT, "
          "`activations_delivered` INTEGER, `activations_failed` INTEGER, `activations_bounced` INTEGER, "
          "`last_engagement_at` BIGINT")
_PULL = re.compile(r"\s*SELECT\s+\*\s+FROM\s+(\w+)\s+WHERE\s+`customer_key`\s*=\s*'([^']*)'\s*;?\s*$", re.I)
SOURCES = (topics.CUSTOMER_PROFILE, topics.ORDER_PLACED, topics.ACTIVATION_STATUS)


def _ms(value: Any) -> int | None:
    return None if value is None else serde.to_millis(value)


class _Customer:
    def __init__(self) -> None:
        self.profile: dict[str, Any] | None = None
        self.orders: dict[str, tuple[float, int]] = {}  # order_id -> (total, placed_at ms)
        self.activations: dict[str, tuple[str, int | None]] = {}  # activation_id -> (status, delivered_at ms)

    def row(self, customer_id: str) -> dict[str, Any] | None:
        p = self.profile
        if p is None:
            return None
        statuses = [s for s, _ in self.activations.values()]
        delivered = [t for s, t in self.activations.values() if s == "delivered" and t is not None]
        return {
            "customer_id": customer_id, "first_name": p["first_name"], "last_name": p["last_name"],
            "email": p["email"], "phone": p.get("phone"), "lifecycle_stage": p["lifecycle_stage"],
            "is_active": p["is_active"], "created_at": _ms(p["created_at"]), "profile_updated_at": _ms(p["updated_at"]),
            "lifetime_value": float(sum(total for total, _ in self.orders.values())),
            "order_count": len(self.orders),
            "last_order_at": max((t for _, t in self.orders.values()), default=None) if self.orders else None,
            "activations_delivered": statuses.count("delivered"),
            "activations_failed": statuses.count("failed") + statuses.count("bounced"),
            "activations_bounced": statuses.count("bounced"),
            "last_engagement_at": max(delivered, default=None),
        }


class KsqlDbViewDouble:
    """Start with ``start()``: reads the sources from their current end (``from_beginning``: from the
    start), writes the view, serves /query on ``url``."""

    def __init__(self, bootstrap: str, registry_url: str, *, from_beginning: bool = False, topic_prefix: str = "",
                 drop: Callable[[str, dict[str, Any]], bool] | None = None) -> None:
        """``topic_prefix``: of the source and view topics (a test's own); ``drop(topic, value)``: records the
        double loses on purpose (a fault for the consistency check to find), by contract topic name."""
        self.bootstrap, self.registry_url, self.from_beginning = bootstrap, registry_url, from_beginning
        self.prefix = topic_prefix
        self.drop = drop
        self.dropped = 0
        self.customers: dict[str, _Customer] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self.paused = threading.Event()  # set: reads nothing (a stalled server, for tests)
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> KsqlDbViewDouble:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"view-double-{uuid.uuid4().hex[:6]}",
                             "enable.auto.commit": False})
        assignment = []
        meta = consumer.list_topics(timeout=10)
        for t in SOURCES:
            name = self.prefix + t.name
            for p in meta.topics[name].partitions:
                start = 0 if self.from_beginning else consumer.get_watermark_offsets(TopicPartition(name, p), 10)[1]
                assignment.append(TopicPartition(name, p, start))
        consumer.assign(assignment)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        for target, name in ((lambda: self._consume(consumer), "view-double-consume"),
                             (self._server.serve_forever, "view-double-http")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(10)

    def row(self, customer_id: str) -> dict[str, Any] | None:
        with self._lock:
            c = self.customers.get(customer_id)
            return None if c is None else c.row(customer_id)

    # ---- the persistent query --------------------------------------------------------------------------------
    def _consume(self, consumer: Consumer) -> None:
        registry = serde.registry_client(self.registry_url)
        codecs = {self.prefix + t.name: serde.TopicSerde(registry, dataclasses.replace(t, name=self.prefix + t.name))
                  for t in SOURCES}
        view_topic = self.prefix + topics.CUSTOMER_CONSOLIDATED.name
        producer = Producer({"bootstrap.servers": self.bootstrap, "partitioner": LIBRDKAFKA_PARTITIONER,
                             "linger.ms": 5})
        try:
            while not self._stop.is_set():
                if self.paused.is_set():
                    self._stop.wait(0.2)
                    continue
                for msg in consumer.consume(200, 0.3):
                    if msg.error() is not None or msg.key() is None or msg.value() is None:
                        continue
                    value = codecs[msg.topic()].deserialize(msg.value())
                    key = msg.key().decode()
                    topic = msg.topic()[len(self.prefix):]
                    if self.drop is not None and self.drop(topic, value):
                        self.dropped += 1
                        continue
                    with self._lock:
                        c = self.customers.setdefault(key, _Customer())
                        if topic == topics.CUSTOMER_PROFILE.name:
                            c.profile = value
                        elif topic == topics.ORDER_PLACED.name:
                            c.orders[value["order_id"]] = (float(value["order_total"]), _ms(value["placed_at"]))
                        else:
                            c.activations[value["activation_id"]] = (value["status"], _ms(value.get("delivered_at")))
                        row = c.row(key)
                    if row is not None:
                        producer.produce(view_topic, key=key.encode(),
                                         value=json.dumps(row).encode(), timestamp=msg.timestamp()[1])
                producer.poll(0)
        except BaseException as exc:  # a test sees it instead of a silently dead double
            self.error = exc
            raise
        finally:
            producer.flush(10)
            consumer.close()

    # ---- REST ---------------------------------------------------------------------------------------------------
    def _query(self, body: dict[str, Any]) -> tuple[int, Any]:
        sql = str(body.get("ksql") or "")
        match = _PULL.fullmatch(sql)
        if match is None or match.group(1).upper() != TABLE:
            return 400, {"@type": "statement_error", "error_code": 40001, "statementText": sql,
                         "message": f"TEST DOUBLE: only 'SELECT * FROM {TABLE} WHERE `customer_key` = ...' "
                                    "is modelled", "entities": []}
        row = self.row(match.group(2))
        out: list[dict[str, Any]] = [{"header": {"queryId": f"query_{uuid.uuid4().hex[:12]}", "schema": SCHEMA}}]
        if row is not None:
            out.append({"row": {"columns": [match.group(2), *(row[c] for c in COLUMNS[1:])]}})
        return 200, out

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/info":
                    self._reply(200, {"KsqlServerInfo": {"version": "0.29.0-TEST-DOUBLE", "serverStatus": "RUNNING"}})
                else:
                    self._reply(404, {"@type": "generic_error", "error_code": 40400, "message": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._reply(400, {"@type": "generic_error", "error_code": 40000, "message": "bad JSON"})
                    return
                if self.path != "/query":
                    self._reply(404, {"@type": "generic_error", "error_code": 40400, "message": "not found"})
                    return
                self._reply(*double._query(body))

        return Handler
