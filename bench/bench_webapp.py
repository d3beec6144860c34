"""Web UI latency with 10k customers cached: p50 / p99 of /api/customers, the list page, the insights page
and the customer page against a trivial Flask route of the same app, served the same way (werkzeug
threaded server, keep-alive HTTP/1.1 client, sequential requests), in the same run, with a real
redis-server written by the feeder's own writer (webapp.cache.CacheWriter). Targets (issue 14):
/api/customers p99 <= 2x the trivial route, list and insights pages p99 <= 4x.

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

from schemas import topics
from seed import events
from tests.support.redis_server import start_redis
from webapp import cache as cache_mod
from webapp import create_app
from webapp.cache import CacheWriter
from webapp.records import FEED_TOPICS, Record
from webapp.settings import WebSettings
from webapp.status import FeederStatus, TopicStatus

SEGMENTS = ("vip_evangelist", "loyal", "at_risk", "new_prospect", "nurture")
BEHAVIOURAL = ("prospect", "customer", "evangelist", "churn-risk")
CONSOLIDATED = topics.CUSTOMER_CONSOLIDATED.name


def populate(writer: CacheWriter, customers: int, seed: int = 42) -> tuple[float, list[str]]:
    """Cache ``customers`` customers as the feeder would: consolidated rows (the contract's fields),
    three scores, a segment change, orders and engagements each. Returns (seconds, ids)."""
    rng = random.Random(seed)
    writer.acquire_lease()
    epoch, _ = writer.claim()
    started = time.perf_counter()
    batch: list[Record] = []
    ids = []
    now = 1_767_225_600_000
    for _ in range(customers):
        profile = events.new_profile(rng, now - rng.randrange(90 * 86_400_000))
        cid = profile["customer_id"]
        ids.append(cid)
        orders = rng.randrange(0, 12)
        delivered, failed = rng.randrange(0, 9), rng.randrange(0, 3)
        batch.append(Record(CONSOLIDATED, cid, {
            "customer_id": cid, "first_name": profile["first_name"], "last_name": profile["last_name"],
            "email": profile["email"], "phone": profile["phone"], "lifecycle_stage": profile["lifecycle_stage"],
            "is_active": True, "created_at": profile["created_at"], "profile_updated_at": profile["updated_at"],
            "order_count": orders, "lifetime_value": round(orders * rng.uniform(10, 120), 2),
            "last_order_at": now - rng.randrange(30 * 86_400_000) if orders else None,
            "activations_delivered": delivered, "activations_failed": failed, "activations_bounced": failed // 2,
            "last_engagement_at": now if delivered else None}, now))
        for k in range(3):
            batch.append(Record(topics.PROPENSITY_SCORE.name, cid, {
                "customer_id": cid, "score": round(rng.random(), 4), "model_version": "bench",
                "behavioural_stage": rng.choice(BEHAVIOURAL), "scored_at": now + k}, now + k))
        for k, segment in enumerate(("nurture", rng.choice(SEGMENTS))):
            batch.append(Record(topics.SEGMENT_MATERIALIZED.name, cid, {"customer_id": cid, "segment": segment},
                                now + k))
        for k in range(min(orders, 5)):
            batch.append(Record(topics.ORDER_ENRICHED.name, cid, {
                "order_id": f"{cid}-{k}", "order_total": 20.0, "currency": "EUR", "channel": "web", "item_count": 1,
                "placed_at": now - k}, now))
        for k in range(min(delivered, 3)):
            batch.append(Record(topics.ACTIVATION_STATUS.name, cid, {
                "activation_id": f"{cid}-a{k}", "order_id": None, "channel": "email", "status": "delivered",
                "delivered_at": now - k, "attempts": 1}, now))
        if len(batch) >= 2000:
            writer.write_batch(epoch, batch, {})
            batch = []
    if batch:
        writer.write_batch(epoch, batch, {})
    # what the live feeder publishes (the insights page shows it)
    writer.write_status(FeederStatus("bench", state="running", heartbeat_ms=int(time.time() * 1000), kafka_ok=True,
                                     kafka_reason=None, lag=0,
                                     topics={t.name: TopicStatus(t.name, lag=0) for t in FEED_TOPICS}))
    return time.perf_counter() - started, ids


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
                "REDIS_URL": server.url, "SECRET_KEY": "bench-" + "x" * 26, "LOG_LEVEL": "WARNING",
                "FEEDER_STALE_S": "3600"})
            app = create_app(settings)
            app.add_url_rule("/bench-trivial", "bench_trivial", lambda: "ok")  # the baseline, same app and server
            runtime = app.extensions["marketing_engine"]
            writer = CacheWriter(cache_mod.connect(server.url, name="bench-feeder"), "bench", history_max=20)
            seconds, ids = populate(writer, args.customers)
            writer.redis.close()
            version = runtime.redis.info("server")["redis_version"]
            cached = runtime.cache.meta()["customers"]
            someone = ids[len(ids) // 2]
            httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
            thread = threading.Thread(target=httpd.serve_forever, daemon=True)
            thread.start()
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"bench_webapp: {cached:,} customers cached in redis-server {version} "
                  f"(written in {seconds:.1f} s by the feeder's transactions); werkzeug threaded server; "
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
                ("insights page /insights (HTML, SVG)", "/insights"),
                ("/api/insights", "/api/insights"),
                ("customer page /customers/<id> (history)", f"/customers/{someone}"),
                ("/api/customers/<id>", f"/api/customers/{someone}"),
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
            by_label = {r[0]: r for r in results}
            api = by_label["/api/customers (25 rows)"]
            page = by_label["list page / (25 rows, HTML)"]
            insights = by_label["insights page /insights (HTML, SVG)"]
            customer = by_label["customer page /customers/<id> (history)"]
            print(f"summary: trivial p99 {base_p99:.2f} ms; /api/customers p99 {api[2]:.2f} ms "
                  f"({api[2] / base_p99:.1f}x, target <= 2x), list page p99 {page[2]:.2f} ms "
                  f"({page[2] / base_p99:.1f}x, target <= 4x), insights page p99 {insights[2]:.2f} ms "
                  f"({insights[2] / base_p99:.1f}x, target <= 4x), customer page p99 {customer[2]:.2f} ms "
                  f"({customer[2] / base_p99:.1f}x); round trips per page do not grow with the page size")
            for label, row, target in ((api[0], api, 2), (page[0], page, 4), (insights[0], insights, 4)):
                verdict = "met" if row[2] / base_p99 <= target else "NOT met"
                print(f"target {label}: p99 <= {target}x trivial: {verdict}")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
