"""TEST DOUBLE of a Confluent-compatible Schema Registry (what Redpanda serves on :8081).

Not shipped in the product. Implements the documented endpoints the product uses, with the
documented reply and error shapes (../shared/design/reference.md):
  POST /subjects/{s}/versions                 -> {"id": n}; same id for an identical schema;
                                                 409 (incompatible, BACKWARD), 422 (invalid schema)
  GET  /schemas/ids/{id}                      -> {"schema": str}; 404 error_code 40403
  GET  /subjects/{s}/versions/latest          -> {"subject","id","version","schema"}; 404 error_code 40401
  GET  /subjects/{s}/versions/{v}             -> same shape
  GET  /subjects/{s}/versions                 -> [1, 2, ...]
  POST /subjects/{s}                          -> lookup of a schema under a subject; 40403 if absent
  POST /compatibility/subjects/{s}/versions/latest -> {"is_compatible": bool}
  GET/PUT /config[/{s}]                       -> {"compatibilityLevel": ...}
  GET  /subjects                              -> [...]
Errors: {"error_code": int, "message": str}. ``fail_next`` lets a test inject transient failures.
"""

from __future__ import annotations

import json
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro

from schemas.compat import backward_incompatibilities

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


def _canonical(schema: str) -> str:
    return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))


class SchemaRegistryDouble:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.schemas: dict[int, str] = {}  # id -> schema string as registered
        self.ids_by_canonical: dict[str, int] = {}
        self.subjects: dict[str, list[int]] = {}  # subject -> schema ids by version
        self.compatibility: dict[str, str] = {}
        self.global_compatibility = "BACKWARD"
        self.requests: list[tuple[str, str]] = []
        self.fail_next: list[int] = []  # HTTP statuses to answer the next requests with
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SchemaRegistryDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- model --------------------------------------------------------------------------------------
    def register(self, subject: str, schema: str) -> tuple[int, dict[str, Any] | None, int]:
        try:
            fastavro.parse_schema(json.loads(schema))
        except Exception as exc:
            return 0, {"error_code": 42201, "message": f"Invalid schema: {exc}"}, 422
        canonical = _canonical(schema)
        with self.lock:
            versions = self.subjects.setdefault(subject, [])
            existing = self.ids_by_canonical.get(canonical)
            if existing is not None and existing in versions:
                return existing, None, 200
            level = self.compatibility.get(subject, self.global_compatibility)
            if versions and level.startswith("BACKWARD"):
                latest = self.schemas[versions[-1]]
                problems = backward_incompatibilities(schema, latest)
                if problems:
                    return 0, {"error_code": 409, "message": "Schema being registered is incompatible with an "
                               f"earlier schema for subject \"{subject}\": {problems[0]}"}, 409
            if existing is None:
                existing = len(self.schemas) + 1
                self.schemas[existing] = schema
                self.ids_by_canonical[canonical] = existing
            versions.append(existing)
            return existing, None, 200

    def _version(self, subject: str, version: str) -> tuple[dict[str, Any], int]:
        versions = self.subjects.get(subject)
        if not versions:
            return {"error_code": 40401, "message": f"Subject '{subject}' not found."}, 404
        index = len(versions) if version == "latest" else int(version)
        if not 1 <= index <= len(versions):
            return {"error_code": 40402, "message": f"Version {version} not found."}, 404
        sid = versions[index - 1]
        return {"subject": subject, "id": sid, "version": index, "schema": self.schemas[sid]}, 200

    # -- HTTP ---------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
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

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _route(self, method: str) -> None:
                double.requests.append((method, self.path))
                if double.fail_next:
                    status = double.fail_next.pop(0)
                    self._reply(status, {"error_code": status * 100 + 1, "message": "injected failure"})
                    return
                path = self.path.split("?")[0]
                try:
                    status, body = self._dispatch(method, path)
                except (KeyError, ValueError, json.JSONDecodeError) as exc:
                    status, body = 422, {"error_code": 42201, "message": f"bad request: {exc}"}
                self._reply(status, body)

            def _dispatch(self, method: str, path: str) -> tuple[int, Any]:
                if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
                    subject = m.group(1)
                    if method == "POST":
                        sid, error, status = double.register(subject, self._body()["schema"])
                        return (status, error) if error else (200, {"id": sid})
                    versions = double.subjects.get(subject)
                    if not versions:
                        return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                    return 200, list(range(1, len(versions) + 1))
                if m := re.fullmatch(r"/subjects/([^/]+)/versions/([^/]+)", path):
                    body, status = double._version(m.group(1), m.group(2))
                    return status, body
                if (m := re.fullmatch(r"/subjects/([^/]+)", path)) and method == "POST":
                    subject, canonical = m.group(1), _canonical(self._body()["schema"])
                    versions = double.subjects.get(subject)
                    if not versions:
                        return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
                    for index, sid in enumerate(versions, 1):
                        if _canonical(double.schemas[sid]) == canonical:
                            return 200, {"subject": subject, "id": sid, "version": index,
                                         "schema": double.schemas[sid]}
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                if path == "/subjects":
                    return 200, sorted(double.subjects)
                if m := re.fullmatch(r"/schemas/ids/(\d+)", path):
                    schema = double.schemas.get(int(m.group(1)))
                    if schema is None:
                        return 404, {"error_code": 40403, "message": "Schema not found"}
                    return 200, {"schema": schema}
                if m := re.fullmatch(r"/compatibility/subjects/([^/]+)/versions/latest", path):
                    versions = double.subjects.get(m.group(1))
                    if not versions:
                        return 404, {"error_code": 40401, "message": f"Subject '{m.group(1)}' not found."}
                    problems = backward_incompatibilities(self._body()["schema"], double.schemas[versions[-1]])
                    return 200, {"is_compatible": not problems, "messages": problems}
                if m := re.fullmatch(r"/config(?:/([^/]+))?", path):
                    subject = m.group(1)
                    if method == "PUT":
                        level = self._body()["compatibility"]
                        if subject:
                            double.compatibility[subject] = level
                        else:
                            double.global_compatibility = level
                        return 200, {"compatibility": level}
                    level = double.compatibility.get(subject, double.global_compatibility) if subject \
                        else double.global_compatibility
                    return 200, {"compatibilityLevel": level}
                return HTTPStatus.NOT_FOUND, {"error_code": 404, "message": f"no route {method} {path}"}

            def do_GET(self) -> None:  # noqa: N802
                self._route("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._route("POST")

            def do_PUT(self) -> None:  # noqa: N802
                self._route("PUT")

        return Handler
