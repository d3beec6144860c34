"""Web UI latency with 10k customers cached: p50 / p99 of the list page and of /api/customers against a
trivial Flask route of the same app, served the same way (werkzeug threaded server, keep-alive HTTP/1.1
client, sequential requests), in the same run, with a real redis-server.

    python -m bench.bench_webapp [--customers 10000] [--requests 400]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis
from werkzeug.serving import WSGIRequestHandler, make_server

from seed import events
from tests.support.redis_server import start_redis
from webapp import create_app, model
from webapp.cache import Cache, Update
from webapp.settings import WebSettings

SEGMENTS = ("vip_evangelist", "loyal", "at_risk", "new_prospect", "nurture")
BEHAVIOURAL = ("new", "active", "loyal", "lapsed", "churned")


def populate(cache: Cache, customers: int, seed: int = 42) -> float:
    """Cache ``customers`` customers (consolidated rows + scores + segments) like the consumer would."""
    rng = random.Random(seed)
    epoch, _ = cache.claim_epoch()
    started = time.perf_counter()
    batch: list[Update] = []
    now = 1_767_225_600_000
    for _ in range(customers):
        profile = events.new_profile(rng, now - rng.randrange(90 * 86_400_000))
        cid = profile["customer_id"]
        orders = rng.randrange(0, 12)
        row = {**profile, "order_count": orders, "lifetime_value": round(orders * rng.uniform(10, 120), 2),
               "delivered_count": rng.randrange(0, 9), "failed_count": rng.randrange(0, 3),
               "last_order_at": now - rng.randrange(30 * 86_400_000) if orders else None}
        batch.append(Update(cid, model.CONSOLIDATED, model.map_record(model.CONSOLIDATED, row)))
        batch.append(Update(cid, model.PROPENSITY, model.map_record(model.PROPENSITY, {
            "score": rng.random(), "model_version": "bench", "behavioural_stage": rng.choice(BEHAVIOURAL),
            "scored_at": now})))
        batch.append(Update(cid, model.SEGMENT, model.map_record(model.SEGMENT, {"segment": rng.choice(SEGMENTS)})))
        if len(batch) >= 1500:
            cache.write_batch(epoch, batch, {})
            batch = []
    if batch:
        cache.write_batch(epoch, batch, {})
    return time.perf_counter() - started


class RoundTrips:
    """Counts Redis round trips (one per command or pipeline sent) made by this process."""

    def __init__(self) -> None:
        self.count = 0
        self._original = redis.connection.Connection.send_packed_command
        counter = self

        def counting(conn, command, check_health=True):  # noqa: ANN001
            counter.count += 1
            return counter._original(conn, command, check_health)

        redis.connection.Connection.send_packed_command = counting  # type: ignore[method-assign]

    def restore(self) -> None:
        redis.connection.Connection.send_packed_command = self._original  # type: ignore[method-assign]


def get(conn: http.client.HTTPConnection, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:200]!r}")
    return elapsed, len(body)


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=400, help="measured requests per route")
    parser.add_argument("--warmup", type=int, default=40)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-webapp-") as tmp:
        server = start_redis(Path(tmp) / "redis")
        try:
            settings = WebSettings.from_env({
                "REDIS_URL": server.url, "SECRET_KEY": "bench-" + "x" * 26, "CACHE_CONSUMER_ENABLED": "false",
                "LOG_LEVEL": "WARNING"})
            app = create_app(settings)
            app.add_url_rule("/bench-trivial", "bench_trivial", lambda: "ok")  # the baseline, same app and server
            runtime = app.extensions["marketing_engine"]
            seconds = populate(runtime.cache, args.customers)
            version = runtime.redis.info("server")["redis_version"]
            cached = runtime.cache.meta()["customers"]
            httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
            thread = threading.Thread(target=httpd.serve_forever, daemon=True)
            thread.start()
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"bench_webapp: {cached:,} customers cached in redis-server {version} "
                  f"(written in {seconds:.1f} s by the consumer's batch script); werkzeug threaded server; "
                  f"{args.requests} keep-alive requests per route, interleaved, after {args.warmup} warm-up rounds; "
                  f"{os.cpu_count()} CPUs, load average {load}")
            routes: list[tuple[str, str]] = [
                ("trivial Flask route (baseline)", "/bench-trivial"),
                ("/api/customers (25 rows)", "/api/customers"),
                ("/api/customers?per_page=200", "/api/customers?per_page=200"),
                ("/api/customers sort=name page 300", "/api/customers?sort=name&dir=asc&page=300"),
                ("/api/customers?q=ada (search)", "/api/customers?q=ada"),
                ("list page / (25 rows, HTML)", "/"),
                ("list page /?per_page=200", "/?per_page=200"),
                ("list page /?q=ada&sort=lifetime_value", "/?q=ada&sort=lifetime_value"),
                ("live-refresh poll /api/status", "/api/status"),
            ]
            conn = http.client.HTTPConnection("127.0.0.1", httpd.server_port, timeout=30)
            samples: dict[str, list[float]] = {path: [] for _, path in routes}
            sizes: dict[str, int] = {}
            trips: dict[str, float] = {}
            try:
                for _ in range(args.warmup):
                    for _, path in routes:
                        get(conn, path)
                # interleaved: every route sees the same machine load (CI hosts are noisy)
                for _ in range(args.requests):
                    for _, path in routes:
                        elapsed, sizes[path] = get(conn, path)
                        samples[path].append(elapsed)
                counter = RoundTrips()
                try:
                    for _, path in routes:
                        counter.count = 0
                        for _ in range(5):
                            get(conn, path)
                        trips[path] = counter.count / 5
                finally:
                    counter.restore()
            finally:
                conn.close()
                httpd.shutdown()
                runtime.close()
            results = [(label, pct(samples[path], 50), pct(samples[path], 99), sizes[path], trips[path])
                       for label, path in routes]
            base_p50, base_p99 = results[0][1], results[0][2]
            width = max(len(r[0]) for r in results)
            print(f"{'route':<{width}}  {'p50 ms':>7}  {'p99 ms':>7}  {'p50 x':>6}  {'p99 x':>6}  "
                  f"{'bytes':>8}  {'redis trips':>11}")
            for label, p50, p99, size, trips in results:
                print(f"{label:<{width}}  {p50:7.2f}  {p99:7.2f}  {p50 / base_p50:6.1f}  {p99 / base_p99:6.1f}  "
                      f"{size:8,d}  {trips:11.0f}")
            api = next(r for r in results if r[0].startswith("/api/customers (25"))
            page = next(r for r in results if r[0].startswith("list page / (25"))
            print(f"summary: /api/customers p50 {api[1]:.2f} ms ({api[1] / base_p50:.1f}x trivial), "
                  f"list page p50 {page[1]:.2f} ms ({page[1] / base_p50:.1f}x trivial), "
                  f"trivial p50 {base_p50:.2f} ms; round trips per page do not grow with the page size")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
