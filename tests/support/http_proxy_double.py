"""TEST DOUBLE of Redpanda's HTTP Proxy (pandaproxy, what Redpanda serves on :8082), produce side.

Not shipped in the product. Follows the v2 API as the real proxies answer it (observed on Confluent's
REST Proxy 7.5, the reference implementation Redpanda's proxy follows; ../shared/design/reference.md):
  POST /topics/{topic}   Content-Type: application/vnd.kafka.binary.v2+json
                         body {"records": [{"key": b64|null, "value": b64|null, "partition": n?}, ...]}
                         -> 200 {"offsets": [{"partition": p, "offset": o}, ...]} one entry per record, in
                            order. Placement: an explicit "partition" is honoured; a keyed record without
                            one goes where the Java producer puts it, murmur2(key) % partitions (observed
                            1,219/1,219); a null key goes to partition 0 (the Java producer's sticky
                            choice: any partition).
                         A topic that does not exist is NOT a 404: the proxy's producer blocks for its
                            max.block.ms (60 s; ``metadata_block_s`` here, so tests need not wait) and
                            answers 200 with, per record, {"partition": null, "offset": null,
                            "error_code": 50003, "error": "Topic <t> not present in metadata after
                            60000 ms."} (observed).
                         400 {"error_code": 400, "message": ...} for a key/value that is not base64
                            (observed) and for a body that is not JSON (assumed alike);
                         422 {"error_code": 422, ...} for JSON without a "records" list (assumed);
                         415 for any other content type, including the Avro embedded format
                            application/vnd.kafka.avro.v2+json that Redpanda does not support;
                         an explicit partition the topic does not have: per-record error_code 3
                            (UNKNOWN_TOPIC_OR_PARTITION), offset -1 (assumed, not observed).
  GET  /topics           -> ["topic", ...], at once (observed). Redpanda's proxy has no GET /topics/{t}
                            (its routes: pandaproxy/api/api-doc/rest.json); neither has this double.
Errors are {"error_code": int, "message": str}.

As a test instrument it also DECODES every record it accepts: the value's Confluent frame (magic 0 +
schema id) is parsed and the Avro body decoded with the schema registered under that id, looked up
in the Schema Registry (the ``schema_registry`` double or any registry URL) with confluent-kafka's
AvroDeserializer. Decoded records are in ``received``; records that could not be decoded are
accepted anyway (the real proxy does not look at the bytes) and listed in ``decode_errors``.

Failure injection, each list consumed one request at a time:
  fail_next:      HTTP statuses to answer the next requests with (nothing is written);
  record_errors:  {record index: Kafka error_code} for the next requests (those records are not written);
  delay_next:     seconds to sleep before handling the next requests (the request is then written:
                  a client that timed out and retries produces a duplicate, as with the real proxy);
  reset_next:     count of next requests whose connection is closed without a reply.
With ``forward_bootstrap`` the accepted bytes are also produced, unchanged, to a real Kafka broker
and the broker's partitions/offsets (or delivery error codes) are returned; the topics and their
partition counts are then the broker's, and a keyed record without a partition is placed by
librdkafka's murmur2_random (the Java producer's hash, independent of schemas.partitioning).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import serde
from schemas.partitioning import LIBRDKAFKA_PARTITIONER, partition_for_key
from schemas.topics import ALL_TOPICS

BINARY_V2 = "application/vnd.kafka.binary.v2+json"
REPLY_CONTENT_TYPE = "application/vnd.kafka.v2+json"


@dataclasses.dataclass
class ReceivedRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    schema_id: int | None = None
    decoded: dict[str, Any] | None = None

    @property
    def key_str(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8")


@dataclasses.dataclass
class RequestLog:
    method: str
    path: str
    content_type: str
    status: int
    records: int


class HttpProxyDouble:
    def __init__(
        self,
        registry: Any = None,
        topics: dict[str, int] | None = None,
        forward_bootstrap: str | None = None,
        metadata_block_s: float = 60.0,
        forward_partitioner: str = LIBRDKAFKA_PARTITIONER,
    ):
        """``registry``: a SchemaRegistryDouble (its ``.url``), a registry URL, or None (no decoding).
        ``topics``: name -> partitions (default: every topic of schemas.topics; with
        ``forward_bootstrap``: the broker's topics). ``metadata_block_s``: how long a produce to a
        missing topic blocks before its 50003 reply (the real proxy's max.block.ms, 60 s).
        ``forward_partitioner``: librdkafka's partitioner for records that name no partition when
        forwarding (murmur2_random = the real proxy; another one shows a client does not depend on it)."""
        registry_url = getattr(registry, "url", registry)
        self.registry_url: str | None = registry_url
        self._deserializer = AvroDeserializer(serde.registry_client(registry_url)) if registry_url else None
        self.topics: dict[str, int] = dict(topics) if topics is not None else {
            t.name: t.partitions for t in ALL_TOPICS}
        self.lock = threading.Lock()
        self.received: dict[str, list[ReceivedRecord]] = {}
        self.decode_errors: list[tuple[str, int, str]] = []  # (topic, offset, reason)
        self.requests: list[RequestLog] = []
        self.fail_next: list[int] = []
        self.record_errors: list[dict[int, int]] = []
        self.delay_next: list[float] = []
        self.reset_next = 0
        self.metadata_block_s = metadata_block_s
        self._next_offset: dict[tuple[str, int], int] = {}
        self._producer = None
        if forward_bootstrap:
            from confluent_kafka import Producer

            self._producer = Producer({"bootstrap.servers": forward_bootstrap, "enable.idempotence": True,
                                       "acks": "all", "linger.ms": 5, "partitioner": forward_partitioner})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HttpProxyDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._producer is not None:
            self._producer.flush(10)

    def __enter__(self) -> HttpProxyDouble:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- inspection ---------------------------------------------------------------------------------
    def records(self, topic: str) -> list[ReceivedRecord]:
        with self.lock:
            return list(self.received.get(topic, []))

    def decoded(self, topic: str) -> list[dict[str, Any]]:
        return [r.decoded for r in self.records(topic) if r.decoded is not None]

    def total(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.received.values())

    # -- model --------------------------------------------------------------------------------------
    def _decode(self, topic: str, value: bytes | None) -> tuple[int | None, dict | None, str | None]:
        if value is None:
            return None, None, "null value"
        try:
            schema_id, _ = serde.parse_frame(value)
        except serde.FramingError as exc:
            return None, None, f"not Confluent-framed: {exc}"
        if self._deserializer is None:
            return schema_id, None, None
        try:
            decoded = self._deserializer(value, SerializationContext(topic, MessageField.VALUE))
        except Exception as exc:  # unknown schema id, body not matching the schema, ...
            return schema_id, None, f"{type(exc).__name__}: {exc}"
        return schema_id, decoded, None

    def topic_partitions(self) -> dict[str, int]:
        """name -> partition count of the topics that exist (the broker's when forwarding)."""
        if self._producer is None:
            return dict(self.topics)
        meta = self._producer.list_topics(timeout=10)
        return {name: len(t.partitions) for name, t in meta.topics.items() if t.error is None}

    def _partition(self, partitions: int, key: bytes | None, requested: int | None) -> int | None:
        if requested is not None:
            return requested if 0 <= requested < partitions else None
        if key is None:
            return 0
        return partition_for_key(key, partitions)

    def _missing_topic_reply(self, topic: str, count: int) -> dict[str, Any]:
        ms = int(round(self.metadata_block_s * 1000))
        error = {"partition": None, "offset": None, "error_code": 50003,
                 "error": f"Topic {topic} not present in metadata after {ms} ms."}
        return {"offsets": [dict(error) for _ in range(count)], "key_schema_id": None, "value_schema_id": None}

    def produce(self, topic: str, records: list[dict[str, Any]]) -> tuple[int, Any]:
        """Validate and write one request's records; (HTTP status, reply body)."""
        decoded_input: list[tuple[bytes | None, bytes | None, int | None]] = []
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or ("value" not in rec and "key" not in rec):
                return 422, {"error_code": 422, "message": f"record {i}: expected an object with key/value"}
            try:
                key = None if rec.get("key") is None else base64.b64decode(rec["key"], validate=True)
                value = None if rec.get("value") is None else base64.b64decode(rec["value"], validate=True)
            except (binascii.Error, TypeError, ValueError) as exc:
                return 400, {"error_code": 400, "message": f"record {i}: key/value is not base64: {exc}"}
            partition = rec.get("partition")
            if partition is not None and (not isinstance(partition, int) or isinstance(partition, bool)):
                return 422, {"error_code": 422, "message": f"record {i}: partition must be an integer"}
            decoded_input.append((key, value, partition))
        partitions = self.topic_partitions().get(topic)
        if partitions is None:  # the proxy's producer waits for metadata that never comes
            time.sleep(self.metadata_block_s)
            return 200, self._missing_topic_reply(topic, len(decoded_input))
        with self.lock:
            injected = self.record_errors.pop(0) if self.record_errors else {}
        offsets: list[dict[str, Any]] = []
        for i, (key, value, requested) in enumerate(decoded_input):
            partition = self._partition(partitions, key, requested)
            if i in injected:
                code = injected[i]
                offsets.append({"partition": partition, "offset": -1, "error_code": code,
                                "error": f"injected failure (code {code})"})
                continue
            if partition is None:
                offsets.append({"partition": requested, "offset": -1, "error_code": 3,
                                "error": f"Invalid partition given with record: {requested} is not in the "
                                         f"range [0...{partitions})."})
                continue
            if self._producer is not None:
                # Without an explicit partition librdkafka's murmur2_random places the key (an independent
                # implementation of the Java hash); the double's own choice is only used otherwise.
                offsets.append(self._forward(topic, requested, key, value))
                if offsets[-1].get("error_code"):
                    continue
                offset = offsets[-1]["offset"]
                partition = offsets[-1]["partition"]
            else:
                with self.lock:
                    offset = self._next_offset.get((topic, partition), 0)
                    self._next_offset[(topic, partition)] = offset + 1
                offsets.append({"partition": partition, "offset": offset})
            schema_id, decoded, error = self._decode(topic, value)
            with self.lock:
                self.received.setdefault(topic, []).append(
                    ReceivedRecord(topic, partition, offset, key, value, schema_id, decoded))
                if error:
                    self.decode_errors.append((topic, offset, error))
        return 200, {"offsets": offsets, "key_schema_id": None, "value_schema_id": None}

    def _forward(self, topic: str, partition: int | None, key: bytes | None, value: bytes | None) -> dict[str, Any]:
        result: dict[str, Any] = {}

        def done(err: Any, msg: Any) -> None:
            if err is None:
                result.update(partition=msg.partition(), offset=msg.offset())
            else:
                result.update(partition=partition, offset=-1, error_code=err.code(), error=err.str())

        assert self._producer is not None
        extra = {} if partition is None else {"partition": partition}
        self._producer.produce(topic, value=value, key=key, on_delivery=done, **extra)
        self._producer.flush(30)
        return result or {"partition": partition, "offset": -1, "error_code": 7, "error": "not delivered"}

    # -- HTTP ---------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a client session expects

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, records: int = 0) -> None:
                data = json.dumps(body).encode()
                with double.lock:
                    double.requests.append(RequestLog(self.command, self.path,
                                                      self.headers.get("Content-Type", ""), status, records))
                self.send_response(status)
                self.send_header("Content-Type", REPLY_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _read_body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length)

            def _injected(self) -> bool:
                """Apply injected failures; True when the request has been answered (or dropped)."""
                with double.lock:
                    delay = double.delay_next.pop(0) if double.delay_next else 0.0
                    reset = False
                    if double.reset_next > 0:
                        double.reset_next -= 1
                        reset = True
                    status = None if reset or not double.fail_next else double.fail_next.pop(0)
                if delay:
                    time.sleep(delay)
                if reset:
                    with double.lock:
                        double.requests.append(RequestLog(self.command, self.path,
                                                          self.headers.get("Content-Type", ""), 0, 0))
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return True
                if status is not None:
                    self._reply(status, {"error_code": status * 100, "message": "injected failure"})
                    return True
                return False

            def do_GET(self) -> None:  # noqa: N802
                if self.path.split("?")[0] == "/topics":
                    self._reply(200, sorted(double.topic_partitions()))
                else:
                    self._reply(404, {"error_code": 40400, "message": f"no route GET {self.path}"})

            def do_POST(self) -> None:  # noqa: N802
                raw = self._read_body()
                m = re.fullmatch(r"/topics/([^/?]+)", self.path.split("?")[0])
                if not m:
                    self._reply(404, {"error_code": 40400, "message": f"no route POST {self.path}"})
                    return
                if self._injected():
                    return
                topic = m.group(1)
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if content_type != BINARY_V2:
                    self._reply(415, {"error_code": 415, "message": f"HTTP 415 Unsupported Media Type: "
                                      f"{content_type or '(none)'}; this proxy accepts {BINARY_V2}"})
                    return
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    self._reply(400, {"error_code": 400, "message": f"malformed JSON: {exc}"})
                    return
                records = body.get("records") if isinstance(body, dict) else None
                if not isinstance(records, list):
                    self._reply(422, {"error_code": 422, "message": "records: expected a list"})
                    return
                status, reply = double.produce(topic, records)
                self._reply(status, reply, len(records))

        return Handler
