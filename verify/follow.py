"""Follow one probe customer through a running stack, hop by hop.

The probe (``schemas.probes``: id ``probe-…``) is a new customer with one order and one delivered
engagement, published through the publisher the web UI uses (``seed.publish``: the HTTP Proxy by
default). Every hop is watched at once from the moment of publishing, and each reports when it first
saw the probe:

=========  =========================================================================================
kafka      the three records on their source topics (a consumer from the offsets before publishing)
ksqldb     ksqlDB's consolidated view has the probe with its order and engagement (a pull query)
web        the web UI's JSON API returns the same (``/api/customers/<id>``, from its Redis cache)
bronze     a bronze batch status names the probe (``dom.pipeline.batch.status.v1``, ``probes``)
silver     a status of each silver query (customers, orders, activations) names it
gold       the gold c360 status names it
score      a propensity score for the probe on ``dom.propensity.score.v1``
=========  =========================================================================================

After the hops, the newest report of the consistency check (``dom.pipeline.consistency.v1``: ksqlDB's
view against gold C360) is printed when the topic has one: read with the same consumer, not a hop, and
never a reason to fail.

Spark's layers are followed through the status the jobs publish after each Delta commit, so verify
needs no Delta access and runs the same against the kind cluster and the local engines. Probes never
count as customers (training, evaluation and the web UI's figures leave them out) and expire from the
web UI's cache; Kafka keeps them for its retention and Delta until the tables are vacuumed or wiped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from confluent_kafka import Consumer, KafkaException, TopicPartition

from common.errors import one_line
from schemas import probes, serde, topics
from seed import events
from seed.publish import PublishError, make_publisher
from verify.settings import VerifySettings
from webapp.status import ConsistencyReport

SOURCES = (topics.CUSTOMER_PROFILE, topics.ORDER_PLACED, topics.ACTIVATION_STATUS)
SILVER_QUERIES = ("silver_customers", "silver_orders", "silver_activations")
CONSOLIDATED_TABLE = "T_CUSTOMER_CONSOLIDATED"
LOOK_EVERY_S = 1.0  # HTTP hops are asked at most this often
ORDER_TOTAL = 42.0
CONSISTENCY_KEY = topics.CONSISTENCY_KEY.encode()


class VerifyError(RuntimeError):
    """Verify could not start (bad endpoint, publish refused); ``str()`` is the one line printed."""


@dataclass
class Hop:
    name: str
    what: str
    seen_s: float | None = None  # seconds after publishing when the probe was first seen here
    detail: str = ""  # what was seen (passed) or the last thing seen (not yet)

    @property
    def passed(self) -> bool:
        return self.seen_s is not None

    def saw(self, started: float, detail: str) -> None:
        if self.seen_s is None:
            self.seen_s, self.detail = time.monotonic() - started, detail

    def last(self, detail: str) -> None:
        if self.seen_s is None:
            self.detail = detail


HOP_WHAT = {
    "kafka": "profile, order and engagement on their topics",
    "ksqldb": f"ksqlDB view {CONSOLIDATED_TABLE} (pull query)",
    "web": "web UI /api/customers/<id>",
    "bronze": "bronze batch committed the probe",
    "silver": "silver customers, orders and activations committed it",
    "gold": "gold c360 committed it",
    "score": f"score on {topics.PROPENSITY_SCORE.name}",
}


@dataclass
class Report:
    probe: str
    hops: list[Hop]
    elapsed_s: float = 0.0
    # per Spark query, its newest batch status seen during the run: (commit time - newest event time) ms
    freshness: dict[str, int] = field(default_factory=dict)
    consistency: str | None = None  # the newest consistency report's line (not a hop)

    @property
    def passed(self) -> int:
        return sum(h.passed for h in self.hops)

    @property
    def ok(self) -> bool:
        return self.passed == len(self.hops)

    def lines(self) -> list[str]:
        out = [f"verify: probe customer {self.probe} (profile, order, engagement) published"]
        for h in self.hops:
            when = f"{h.seen_s:6.1f} s" if h.passed else "   --   "
            out.append(f"  {'PASS' if h.passed else 'FAIL'}  {h.name:7} {when}  {h.what}"
                       + (f": {h.detail}" if h.detail else ""))
        if self.freshness:
            out.append("  freshness (newest batch seen: commit time - newest event time): " + ", ".join(
                f"{q} {ms / 1000:.1f} s" for q, ms in sorted(self.freshness.items())))
        if self.consistency:
            out.append(f"  consistency (ksqlDB view vs gold, not a hop): {self.consistency}")
        if self.ok:
            out.append(f"PASS {self.passed}/{len(self.hops)}")
        else:
            first = next(h for h in self.hops if not h.passed)
            out.append(f"FAIL {self.passed}/{len(self.hops)}: first failed hop {first.name} "
                       f"(not seen within {self.elapsed_s:.0f} s; last seen: {first.detail or 'nothing'})")
        return out


def probe_records(probe: str, now_ms: int, rng: random.Random) -> list[tuple[topics.Topic, dict[str, Any]]]:
    """The probe's profile, order and delivered engagement, built as the web UI builds its actions."""
    profile = events.new_profile(rng, now_ms, lifecycle_stage="prospect", first_name="Probe", last_name=probe,
                                 email=f"{probe}@verify.invalid")
    profile["customer_id"] = probe
    order = events.new_order(rng, probe, now_ms, items=[{"sku": "VERIFY-1", "quantity": 1, "price": ORDER_TOTAL}])
    engagement = events.new_activation(rng, probe, now_ms, channel="email", status="delivered")
    return [(topics.CUSTOMER_PROFILE, profile), (topics.ORDER_PLACED, order), (topics.ACTIVATION_STATUS, engagement)]


class _Topics:
    """One consumer over the source, status and score topics, positioned at their ends before the probe."""

    def __init__(self, settings: VerifySettings, names: Iterable[str]):
        self.settings = settings
        self.consumer = Consumer({
            "bootstrap.servers": settings.bootstrap_servers, "group.id": "marketing-engine-verify",
            "enable.auto.commit": False, "socket.connection.setup.timeout.ms": 5000,
            "logger": _QUIET,
        })
        registry = serde.registry_client(settings.schema_registry_url)
        self.status_serde = serde.TopicSerde(registry, topics.PIPELINE_STATUS)
        self.score_serde = serde.TopicSerde(registry, topics.PROPENSITY_SCORE)
        self.consistency_serde = serde.TopicSerde(registry, topics.CONSISTENCY)
        assignment = []
        try:
            meta = self.consumer.list_topics(timeout=10)
            for name in names:
                t = meta.topics.get(name)
                if t is None or t.error is not None:
                    raise VerifyError(f"topic {name} not found on Kafka at {settings.bootstrap_servers} "
                                      f"({settings.env_name('bootstrap_servers')}): is the stack up?")
                for p in t.partitions:
                    _, high = self.consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                    assignment.append(TopicPartition(name, p, high))
        except KafkaException as exc:
            self.consumer.close()
            raise VerifyError(f"Kafka unreachable at {settings.bootstrap_servers} "
                              f"({settings.env_name('bootstrap_servers')}): {one_line(exc)}") from None
        except VerifyError:
            self.consumer.close()
            raise
        self.consumer.assign(assignment)

    def poll(self, timeout: float) -> list[Any]:
        return [m for m in self.consumer.consume(500, timeout) if m.error() is None]

    def newest_consistency(self, timeout: float = 5.0) -> str | None:
        """The newest consistency report's summary line, read with this consumer once the hops are done
        (its assignment is replaced); None when the topic is missing or empty, or the record unreadable.
        Never raises: the report is shown beside the hops, it is not one."""
        name = topics.CONSISTENCY.name
        try:
            meta = self.consumer.list_topics(name, timeout=timeout)
            t = meta.topics.get(name)
            if t is None or t.error is not None:
                return None
            last = []
            for p in t.partitions:
                low, high = self.consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout)
                if high > max(low, 0):
                    last.append(TopicPartition(name, p, high - 1))
            if not last:
                return None
            self.consumer.assign(last)
            deadline, read = time.monotonic() + timeout, []
            while len(read) < len(last) and time.monotonic() < deadline:
                read += [m for m in self.consumer.consume(len(last), 0.5) if m.error() is None]
            reports = [m for m in read if m.value() and m.key() == CONSISTENCY_KEY]
            return consistency_line([self.consistency_serde.deserialize(m.value()) for m in reports])
        except Exception as exc:  # noqa: BLE001 - shown beside the hops, never their verdict
            return f"not read ({one_line(exc)})"

    def close(self) -> None:
        self.consumer.close()


class _Quiet:
    """librdkafka's reconnect chatter is not verify's output (a failed hop says what it saw)."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        return


_QUIET = _Quiet()


def consistency_line(reports: list[dict[str, Any]], now_ms: int | None = None) -> str | None:
    """``998/1000 checked, 998 agree, 0 disagree, 2 catching up (checked 40 s ago)`` of the newest report
    (by checked_at) among ``reports`` (decoded records of dom.pipeline.consistency.v1), None for none."""
    if not reports:
        return None
    newest = max(reports, key=lambda report: serde.to_millis(report["checked_at"]))
    report = ConsistencyReport.from_record({**newest, "checked_at": serde.to_millis(newest["checked_at"])})
    return report.summary(now_ms)  # the same words as make status and the web UI


def pull_query(session: requests.Session, url: str, probe: str, timeout: float) -> dict[str, Any] | None:
    """The probe's row of the consolidated view (column name -> value), None when it has none yet."""
    if not probes.is_probe(probe) or not probe.replace("-", "").isalnum():
        raise ValueError(f"not a probe id: {probe!r}")
    sql = f"SELECT * FROM {CONSOLIDATED_TABLE} WHERE `customer_key` = '{probe}';"  # noqa: S608 - checked above
    resp = session.post(f"{url.rstrip('/')}/query", json={"ksql": sql, "streamsProperties": {}},
                        headers={"Accept": "application/vnd.ksql.v1+json"}, timeout=timeout)
    body = resp.json()
    if resp.status_code != 200:
        message = body.get("message") if isinstance(body, dict) else body
        raise RuntimeError(f"HTTP {resp.status_code}: {one_line(str(message))}")
    header = next((e["header"] for e in body if isinstance(e, dict) and "header" in e), None)
    rows = [e["row"]["columns"] for e in body if isinstance(e, dict) and "row" in e]
    if header is None or not rows:
        return None
    names = [part.strip().split(" ", 1)[0].strip("`") for part in _split_schema(header["schema"])]
    return dict(zip(names, rows[-1], strict=False))


def _split_schema(schema: str) -> list[str]:
    """"`A` STRING KEY, `B` STRUCT<`X` INT, `Y` INT>" -> its top-level column definitions."""
    parts, depth, current = [], 0, ""
    for ch in schema:
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [p for p in [*parts, current] if p.strip()]


def _complete(row: dict[str, Any] | None) -> bool:
    return row is not None and (row.get("order_count") or 0) >= 1 and (row.get("activations_delivered") or 0) >= 1


def _describe(row: dict[str, Any] | None) -> str:
    if row is None:
        return "no row for the probe"
    return (f"{row.get('order_count')} order(s), lifetime value {row.get('lifetime_value')}, "
            f"{row.get('activations_delivered')} delivered engagement(s)")


def run(settings: VerifySettings, *, probe: str | None = None, out: Callable[[str], None] = print) -> Report:
    """Publish a probe and follow it until every hop saw it or VERIFY_TIMEOUT_S passed."""
    probe = probe or probes.new_probe_id()
    hops = {name: Hop(name, HOP_WHAT[name]) for name in settings.hops}
    watch_topics = [t.name for t in SOURCES] if "kafka" in hops else []
    if {"bronze", "silver", "gold"} & set(hops):
        watch_topics.append(topics.PIPELINE_STATUS.name)
    if "score" in hops:
        watch_topics.append(topics.PROPENSITY_SCORE.name)
    feed = _Topics(settings, watch_topics) if watch_topics else None
    http = requests.Session()
    try:
        now_ms = int(time.time() * 1000)
        records = probe_records(probe, now_ms, random.Random())
        publisher = make_publisher(settings.publisher)
        try:
            for topic, record in records:
                publisher.publish(topic, [(probe, record)])
        except PublishError as exc:
            raise VerifyError(f"the probe could not be published: {exc}") from None
        finally:
            publisher.close()
        started = time.monotonic()
        out(f"verify: probe {probe} published through {settings.transport} "
            f"({settings.rest_proxy_url if settings.transport == 'rest' else settings.bootstrap_servers}); "
            f"following {len(hops)} hops for up to {settings.timeout_s:.0f} s")
        report = Report(probe, list(hops.values()))
        _Follow(settings, probe, hops, feed, http, started, report.freshness).run(out)
        report.elapsed_s = time.monotonic() - started
        if feed is not None:
            report.consistency = feed.newest_consistency()
        return report
    finally:
        http.close()
        if feed is not None:
            feed.close()


class _Follow:
    """One run's watch: what each hop has seen so far, from the topics (fed) and the HTTP hops (asked)."""

    def __init__(self, settings: VerifySettings, probe: str, hops: dict[str, Hop], feed: _Topics | None,
                 http: requests.Session, started: float, freshness: dict[str, int]):
        self.settings, self.probe, self.hops, self.feed, self.http = settings, probe, hops, feed, http
        self.started = started
        self.freshness = freshness  # query -> commit time - newest event time (ms) of its newest status
        self.sources_seen: set[str] = set()
        self.silver_seen: set[str] = set()
        self.newest_status: dict[str, str] = {}  # layer -> the newest batch seen without the probe

    def run(self, out: Callable[[str], None]) -> None:
        hops = self.hops
        deadline = self.started + self.settings.timeout_s
        next_look = 0.0
        while time.monotonic() < deadline and not all(h.passed for h in hops.values()):
            before = {n for n, h in hops.items() if h.passed}
            if self.feed is not None:
                for msg in self.feed.poll(0.5):
                    self.on_message(msg)
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + LOOK_EVERY_S
                self.look()
            else:
                time.sleep(0.05)
            for name in hops:
                if name not in before and hops[name].passed:
                    out(f"  seen in {name} after {hops[name].seen_s:.1f} s")
        for layer, seen in self.newest_status.items():
            if layer in hops and not hops[layer].passed:
                hops[layer].last(seen)
        if "kafka" in hops and not hops["kafka"].passed:
            hops["kafka"].last(f"only on {', '.join(sorted(self.sources_seen)) or 'no topic'}")

    def on_message(self, msg: Any) -> None:
        topic, hops = msg.topic(), self.hops
        if topic == topics.PIPELINE_STATUS.name:
            self._on_status(msg)
            return
        key = msg.key().decode() if msg.key() else None
        if key != self.probe:
            return
        if topic == topics.PROPENSITY_SCORE.name and "score" in hops:
            try:
                score = self.feed.score_serde.deserialize(msg.value())  # type: ignore[union-attr]
                hops["score"].saw(self.started, f"{score.get('score', 0.0):.3f} (model {score.get('model_version')})")
            except Exception as exc:  # noqa: BLE001
                hops["score"].last(f"an undecodable score record ({one_line(exc)})")
            return
        self.sources_seen.add(topic)
        if "kafka" in hops and all(t.name in self.sources_seen for t in SOURCES):
            hops["kafka"].saw(self.started, "3/3 records")

    def _on_status(self, msg: Any) -> None:
        try:
            status = self.feed.status_serde.deserialize(msg.value())  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - one undecodable status is reported, not fatal
            # which layer wrote it is unknown: it is the last thing seen of each layer that saw nothing else
            for layer in ("bronze", "silver", "gold"):
                self.newest_status.setdefault(layer, f"an undecodable batch status ({one_line(exc)})")
            return
        layer, query = status["job"], status["query"]
        if status.get("newest_event_at") is not None:
            self.freshness[query] = (serde.to_millis(status["committed_at"])
                                     - serde.to_millis(status["newest_event_at"]))
        if self.probe not in (status.get("probes") or []):
            self.newest_status[layer] = (f"newest {query} batch {status['batch_id']} ({status['rows']} rows) "
                                         "without the probe")
            return
        if layer == "silver":
            self.silver_seen.add(query)
            missing = [q for q in SILVER_QUERIES if q not in self.silver_seen]
            if missing:
                self.newest_status["silver"] = (f"named by {', '.join(sorted(self.silver_seen))}, "
                                                f"not yet by {', '.join(missing)}")
                return
        if layer in self.hops:
            self.hops[layer].saw(self.started, f"{query} batch {status['batch_id']}")

    def look(self) -> None:
        """Ask the HTTP hops that have not seen the probe yet."""
        settings, probe, hops, started, http = self.settings, self.probe, self.hops, self.started, self.http
        timeout = min(5.0, settings.request_timeout_s)
        if "ksqldb" in hops and not hops["ksqldb"].passed:
            try:
                row = pull_query(http, settings.ksqldb_url, probe, timeout)
            except (requests.RequestException, ValueError, RuntimeError) as exc:
                hops["ksqldb"].last(f"{settings.ksqldb_url} ({settings.env_name('ksqldb_url')}): {one_line(exc)}")
            else:
                if _complete(row):
                    hops["ksqldb"].saw(started, _describe(row))
                else:
                    hops["ksqldb"].last(_describe(row))
        if "web" in hops and not hops["web"].passed:
            url = f"{settings.web_url.rstrip('/')}/api/customers/{probe}"
            try:
                resp = http.get(url, timeout=timeout, headers={"Accept": "application/json"})
                body = resp.json()
            except (requests.RequestException, ValueError) as exc:
                hops["web"].last(f"{settings.web_url} ({settings.env_name('web_url')}): {one_line(exc)}")
                return
            if resp.status_code == 200 and _complete(body):
                hops["web"].saw(started, _describe(body))
            elif resp.status_code == 200:
                hops["web"].last(_describe(body))
            else:
                reason = (body.get("reason") or body.get("error")) if isinstance(body, dict) else body
                hops["web"].last(f"HTTP {resp.status_code}: {one_line(str(reason))}")
