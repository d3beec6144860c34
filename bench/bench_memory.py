"""Resident memory of every process we ship, measured here under a realistic load, and the requests and
limits chosen from it (docs/kubernetes.md#memory-budget shows the table; the chart's values follow it).

What runs, each as its own process tree sampled from /proc (VmRSS of every process in the tree, summed,
every --interval seconds; peak = the largest such sum, also compared with the sum of VmHWM):
  * seed: `python -m seed` (1,000 customers x 90 days, REST transport) through the HTTP Proxy double
    into a real Kafka broker, Avro via the Schema Registry double;
  * spark-<job>: the four streaming jobs (`python -m spark.jobs.<job>`) at once, each in driver-only
    mode (`local[2]`, as spark.kubernetes.driver.master runs it in its driver pod) with the heap and
    JVM flags of the chart (--heap, --java-options, MALLOC_ARENA_MAX), 10 s trigger; they catch up with
    the seeded backlog (score trains its model first), while a second seed keeps producing at --rate
    events/s; steady = the median of the last --steady seconds, once the score topic holds every seeded
    customer (or --catchup-timeout passed);
  * web-feeder: `python -m webapp.feeder` consuming the default seed's backlog of its five topics
    (FeedBacklog: 1,000 customers x 90 days, from the seed's simulation) into a real redis-server, then
    --rate records/s more; web: gunicorn with the chart's worker/thread counts (values.yaml web:) serving
    pages and the API from that Redis to four looping clients for --web-seconds, after the feeder caught
    up; steady for both = the median of that window;
  * ksql-operator: `kopf run` against a real kube-apiserver (tests/cluster) with the chart's KSQL
    ConfigMap, ksqlDB = the TEST DOUBLE, drift checks every 10 s.

Requests = steady + margin (a stated share, at least a floor), limits >= peak + headroom; nothing is
set below what was measured. Run: python -m bench.bench_memory [--only spark,web,operator,seed]
[--json out.json]. A few minutes per part on two cores; the Spark part is the long one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.support.paths import REPO, SPARK_JARS

PY = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
BIN = Path(PY).parent
JOBS = ("bronze", "silver", "gold", "score")
# The laptop profile of the Spark drivers (charts/marketing-engine/values.yaml pipeline.driver): the
# smallest heap Spark accepts with room (it refuses a usable heap under 1.5 x 300 MiB), SerialGC (one
# collector thread, no G1 remembered sets), a smaller code cache and C1 only (less JIT memory, slower
# peak code), and glibc malloc arenas capped (Netty/Kafka threads otherwise get 64 MiB arenas each).
LAPTOP_HEAP = "480m"
LAPTOP_JAVA_OPTIONS = "-XX:+UseSerialGC -XX:ReservedCodeCacheSize=96m -XX:TieredStopAtLevel=1"
MALLOC_ARENA_MAX = "2"
MARGIN_SHARE = 0.10  # requests = steady x (1 + this), at least MARGIN_FLOOR_MIB above it
MARGIN_FLOOR_MIB = 16
LIMIT_HEADROOM = 0.25  # limits = peak x (1 + this), rounded up


# --- sampling -------------------------------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])  # kB
    return out


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
            stat = f.read()
        try:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError, UnboundLocalError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _tree(root: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


@dataclass
class Series:
    name: str
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, MiB)
    hwm_mib: float = 0.0  # sum of VmHWM over the tree (an upper bound of the tree's peak)
    processes: int = 0
    steady_from: float | None = None  # t at which the steady window starts (None: whole run)

    def steady(self) -> float:
        window = [m for t, m in self.samples if self.steady_from is None or t >= self.steady_from]
        return statistics.median(window) if window else float("nan")

    def peak(self) -> float:
        """Largest 3-sample rolling median: a process forked for a moment (a JVM running a shell command)
        shows its parent's copy-on-write pages as its own RSS for one sample; the cgroup charges those
        pages once, so a one-sample spike is not memory the pod needs (raw_peak keeps it)."""
        values = [m for _, m in self.samples]
        if len(values) < 3:
            return max(values, default=float("nan"))
        return max(statistics.median(values[i:i + 3]) for i in range(len(values) - 2))

    def raw_peak(self) -> float:
        return max((m for _, m in self.samples), default=float("nan"))


class Sampler:
    """Samples the process trees under the given root pids every ``interval`` seconds in a thread."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.roots: dict[str, int] = {}
        self.series: dict[str, Series] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def watch(self, name: str, pid: int) -> Series:
        self.roots[name] = pid
        return self.series.setdefault(name, Series(name))

    def forget(self, name: str) -> None:
        self.roots.pop(name, None)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            children = _children()
            for name, root in list(self.roots.items()):
                pids = _tree(root, children)
                stats = [_status(p) for p in pids]
                rss = sum(s.get("VmRSS", 0) for s in stats) / 1024
                if rss == 0:
                    continue
                series = self.series[name]
                series.samples.append((self.now(), rss))
                series.hwm_mib = max(series.hwm_mib, sum(s.get("VmHWM", 0) for s in stats) / 1024)
                series.processes = max(series.processes, len([s for s in stats if s]))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the parts -------------------------------------------------------------------------------------------


@dataclass
class Env:
    root: Path
    broker: object
    registry: object
    proxy: object


@contextlib.contextmanager
def engines() -> Iterator[Env]:
    from schemas import topics
    from tests.support.http_proxy_double import HttpProxyDouble
    from tests.support.kafka_broker import start_broker
    from tests.support.schema_registry_double import SchemaRegistryDouble

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        broker = start_broker(root / "kafka")
        registry = SchemaRegistryDouble().start()
        try:
            for t in topics.ALL_TOPICS:
                broker.create_topics([t.name], partitions=t.partitions)
            proxy = HttpProxyDouble(registry, forward_bootstrap=broker.bootstrap).start()
            try:
                yield Env(root, broker, registry, proxy)
            finally:
                proxy.stop()
        finally:
            registry.stop()
            broker.stop()


def _spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path):
    from tests.support.procs import ServerProcess

    return ServerProcess(name, argv, log_dir / f"{name}.log", env={"PYTHONPATH": str(REPO), **env}, cwd=REPO)


def seed_env(env: Env, **extra: str) -> dict[str, str]:
    return {"SEED_CUSTOMERS": "1000", "SEED_DAYS": "90", "SEED_RATE": "0", "SEED_RANDOM_SEED": "42",
            "SEED_START_DATE": "2026-01-01", "PUBLISH_TRANSPORT": "rest", "REST_PROXY_URL": env.proxy.url,
            "SCHEMA_REGISTRY_URL": env.registry.url, "KAFKA_BOOTSTRAP_SERVERS": env.broker.bootstrap,
            "SEED_GROUND_TRUTH": str(env.root / "delta" / "_ground_truth" / "truth.csv"),
            "LOG_LEVEL": "INFO", "LOG_JSON": "true", **extra}


def run_seed(env: Env, sampler: Sampler) -> Series:
    (env.root / "delta" / "_ground_truth").mkdir(parents=True, exist_ok=True)
    proc = _spawn("seed", [PY, "-m", "seed"], seed_env(env), env.root)
    series = sampler.watch("seed", proc.proc.pid)
    started = time.monotonic()
    code = proc.proc.wait(1800)
    proc.stop()
    sampler.forget("seed")
    if code != 0:
        raise RuntimeError(f"seed exited {code}:\n{proc.log_tail()}")
    print(f"  seed: {time.monotonic() - started:.0f} s, {series.processes} process(es)", flush=True)
    return series


def _score_count(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-memory-count"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def run_spark(env: Env, sampler: Sampler, args: argparse.Namespace) -> tuple[list[Series], dict[str, float]]:
    from schemas import topics

    java_options = args.java_options
    submit = ["--driver-memory", args.heap]
    if java_options:
        submit += ["--driver-java-options", java_options]
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": env.broker.bootstrap, "SCHEMA_REGISTRY_URL": env.registry.url,
        "DELTA_ROOT": str(env.root / "delta"), "TRIGGER_INTERVAL": "10 seconds", "STARTING_OFFSETS": "earliest",
        "MAX_OFFSETS_PER_TRIGGER": "50000", "SPARK_MASTER": "local[2]", "SPARK_JARS_DIR": str(SPARK_JARS),
        "LOG_LEVEL": "INFO", "PYSPARK_PYTHON": PY, "PYSPARK_SUBMIT_ARGS": shlex.join([*submit, "pyspark-shell"]),
        "STARTUP_WAIT_S": "60",
    }
    if args.malloc_arena_max:
        common["MALLOC_ARENA_MAX"] = args.malloc_arena_max
    procs = {}
    for job in JOBS:
        procs[job] = _spawn(f"spark-{job}", [PY, "-m", f"spark.jobs.{job}"], common, env.root)
        sampler.watch(f"spark-{job}", procs[job].proc.pid)
    started = time.monotonic()
    # steady streaming: a second simulated population, produced at a bounded rate while the jobs run
    trickle = _spawn("seed-trickle", [PY, "-m", "seed"], seed_env(
        env, SEED_CUSTOMERS="300", SEED_RANDOM_SEED="7", SEED_START_DATE="2026-04-01",
        SEED_RATE=str(args.rate), SEED_GROUND_TRUTH=""), env.root)
    figures: dict[str, float] = {}
    try:
        deadline = started + args.catchup_timeout
        while time.monotonic() < deadline:
            for job, proc in procs.items():
                if proc.proc.poll() is not None:
                    raise RuntimeError(f"spark {job} exited {proc.proc.returncode}:\n{proc.log_tail()}")
            with contextlib.suppress(Exception):
                if _score_count(env.broker.bootstrap, topics.PROPENSITY_SCORE.name) >= 1000:
                    figures["catchup_s"] = time.monotonic() - started
                    break
            time.sleep(5)
        else:
            figures["catchup_s"] = float("nan")
        steady_from = sampler.now()
        print(f"  spark: backlog {'scored' if 'catchup_s' in figures and not math.isnan(figures['catchup_s']) else 'NOT fully scored'}"
              f" after {time.monotonic() - started:.0f} s; steady window {args.steady:.0f} s", flush=True)
        time.sleep(args.steady)
        figures["scored_records"] = float(_score_count(env.broker.bootstrap, topics.PROPENSITY_SCORE.name))
    finally:
        trickle.stop()
        for job, proc in procs.items():
            proc.stop(grace=30)
            sampler.forget(f"spark-{job}")
    out = []
    for job in JOBS:
        series = sampler.series[f"spark-{job}"]
        series.steady_from = steady_from
        out.append(series)
    return out, figures


class FeedBacklog:
    """What the feeder's five topics hold after the default seed (1,000 customers x 90 days), built from the
    seed's own simulation: activation statuses as the seed publishes them (Avro); per order an enriched
    order (JSON, as ksql/030-orders.sql writes it); per profile, order or activation change an update of
    the consolidated row (JSON, every field of its contract: ksqlDB emits one per change, no record
    cache); per order or activation a propensity score (Avro: the score job rescores a customer whose
    gold row changed) and a segment record when the rule's segment changes (Avro). A model of what
    ksqlDB and the score job emit, not their output."""

    def __init__(self, customers: int, days: int, seed: int, start_ms: int | None = None) -> None:
        from seed.simulator import SimConfig, Simulator

        cfg = SimConfig(customers=customers, days=days, seed=seed,
                        **({"start_ms": start_ms} if start_ms is not None else {}))
        self.events = Simulator(cfg).events()
        self.state: dict[str, dict] = {}
        self.segments: dict[str, str] = {}

    def _segment(self, row: dict) -> str:
        if row["order_count"] == 0:
            return "new_prospect"
        if row["lifetime_value"] > 500:
            return "vip_evangelist" if row["lifecycle_stage"] == "evangelist" else "loyal"
        return "nurture"

    def records(self) -> Iterator[tuple[str, str, dict]]:
        """(topic name, customer_id, value) in event order."""
        from schemas import topics
        from tests.engines.test_webapp_helpers import consolidated, enriched_order, score, segment

        for event in self.events:
            cid, rec = event.key, event.record
            row = self.state.get(cid)
            if event.topic is topics.CUSTOMER_PROFILE:
                fields = {k: rec.get(k) for k in ("first_name", "last_name", "email", "phone", "lifecycle_stage",
                                                  "is_active", "created_at")}
                fields["profile_updated_at"] = rec.get("updated_at")
                row = {**(row or consolidated(cid)), **fields}
            elif row is None:
                row = consolidated(cid)  # an order or activation before the profile (late profile)
            rescored = False
            if event.topic is topics.ORDER_PLACED:
                row["order_count"] += 1
                row["lifetime_value"] = round(row["lifetime_value"] + rec["order_total"], 2)
                row["last_order_at"] = rec["placed_at"]
                yield topics.ORDER_ENRICHED.name, cid, enriched_order(
                    cid, rec["order_id"], rec["order_total"], rec["placed_at"], channel=rec["channel"],
                    item_count=len(rec["items"]), first_name=row["first_name"], last_name=row["last_name"],
                    email=row["email"], lifecycle_stage=row["lifecycle_stage"])
                rescored = True
            elif event.topic is topics.ACTIVATION_STATUS:
                status = rec["status"]
                if status == "delivered":
                    row["activations_delivered"] += 1
                    row["last_engagement_at"] = rec["delivered_at"]
                else:
                    row["activations_failed"] += 1
                    row["activations_bounced"] += status == "bounced"
                yield topics.ACTIVATION_STATUS.name, cid, rec
                rescored = True
            self.state[cid] = row
            yield topics.CUSTOMER_CONSOLIDATED.name, cid, dict(row)
            if rescored:
                value = min(1.0, 0.05 + 0.08 * row["order_count"] + 0.02 * row["activations_delivered"])
                yield topics.PROPENSITY_SCORE.name, cid, score(cid, round(value, 4), int(time.time() * 1000),
                                                               model_version="bench")
            seg = self._segment(row)
            if self.segments.get(cid) != seg:
                self.segments[cid] = seg
                yield topics.SEGMENT_MATERIALIZED.name, cid, {**segment(cid, seg),
                                                              "lifecycle_stage": row["lifecycle_stage"],
                                                              "lifetime_value": row["lifetime_value"],
                                                              "order_count": row["order_count"]}


class FeedProducer:
    """Produces FeedBacklog records to the broker (JSON as ksqlDB writes it, Avro in Confluent framing)."""

    def __init__(self, env: Env) -> None:
        from confluent_kafka import Producer

        from schemas import serde, topics
        from schemas.partitioning import LIBRDKAFKA_PARTITIONER

        self.producer = Producer({"bootstrap.servers": env.broker.bootstrap, "linger.ms": 20,
                                  "partitioner": LIBRDKAFKA_PARTITIONER})
        registry = serde.registry_client(env.registry.url)
        self.codecs = {t.name: serde.TopicSerde(registry, t) for t in (
            topics.PROPENSITY_SCORE, topics.SEGMENT_MATERIALIZED, topics.ACTIVATION_STATUS)}
        self.sent = 0

    def send(self, topic: str, key: str, value: dict) -> None:
        codec = self.codecs.get(topic)
        data = codec.serialize(value) if codec else json.dumps(value).encode()
        while True:
            try:
                self.producer.produce(topic, key=key, value=data)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)
        self.sent += 1

    def flush(self) -> None:
        if self.producer.flush(60) != 0:
            raise RuntimeError("feed records not delivered within 60 s")


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def run_web(env: Env, sampler: Sampler, args: argparse.Namespace) -> list[Series]:
    """The feeder (python -m webapp.feeder) consuming the default seed's backlog of its five topics into a
    real redis-server, then, while more records stream in, gunicorn (the chart's workers and threads)
    serving pages and the API from that Redis to four looping clients. Both sampled the whole time;
    steady = the median of the shared window after the feeder caught up."""
    from tests.support.procs import free_port
    from tests.support.redis_server import start_redis

    values = yaml_values()["web"]
    redis_server = start_redis(env.root / "redis")
    feed = FeedProducer(env)
    try:
        backlog = FeedBacklog(1000, 90, 42)
        t0 = time.monotonic()
        for record in backlog.records():
            feed.send(*record)
        feed.flush()
        print(f"  feeder backlog: {feed.sent} records (1,000 customers x 90 days) produced in "
              f"{time.monotonic() - t0:.0f} s", flush=True)
        common = {"REDIS_URL": redis_server.url, "KAFKA_BOOTSTRAP_SERVERS": env.broker.bootstrap,
                  "SCHEMA_REGISTRY_URL": env.registry.url, "LOG_LEVEL": "INFO", "LOG_JSON": "true",
                  "BIND_HOST": "127.0.0.1"}
        health = free_port()
        feeder = _spawn("web-feeder", [PY, "-m", "webapp.feeder"], {
            **common, "FEEDER_HEALTH_PORT": str(health), "FEEDER_BATCH_MAX": str(values["feeder"]["batchMax"]),
            "HISTORY_MAX": str(values["feeder"]["historyMax"])}, env.root)
        fseries = sampler.watch("web-feeder", feeder.proc.pid)
        started = time.monotonic()
        backlog_total = feed.sent

        def caught_up() -> bool:
            status = _get_json(f"http://127.0.0.1:{health}/status")
            seen = sum(t["records"] + sum(t["mismatches"].values()) for t in status["topics"].values())
            return status.get("lag") == 0 and seen >= backlog_total

        feeder.wait_until(caught_up, args.catchup_timeout, "the feeder caught up with the backlog")
        catchup = time.monotonic() - started
        print(f"  feeder: backlog in Redis after {catchup:.0f} s", flush=True)
        port = free_port()
        web = _spawn("web", [str(BIN / "gunicorn"), "-c", "python:webapp.gunicorn_conf"], {
            **common, "APP_ENV": "production", "SECRET_KEY": "bench-" + "y" * 40, "PORT": str(port),
            "WEB_WORKERS": str(values["workers"]), "WEB_THREADS": str(values["threads"]),
            "READY_MAX_LAG": str(values["readyMaxLag"]), "PUBLISH_TRANSPORT": "rest",
            "REST_PROXY_URL": env.proxy.url}, env.root)
        base = f"http://127.0.0.1:{port}"
        web.wait_until(lambda: urllib.request.urlopen(base + "/healthz", timeout=2).status == 200, 60, "serving")
        wseries = sampler.watch("web", web.proc.pid)
        ids = list(backlog.state)[:50]
        paths = ["/", "/?per_page=200", "/api/customers", "/api/customers?per_page=200",
                 "/api/customers?q=ada", "/?q=ada&sort=lifetime_value", "/insights", "/api/status", "/readyz",
                 *[f"/customers/{c}" for c in ids[:5]], *[f"/api/customers/{c}/history" for c in ids[5:10]]]
        requests_done, failures = 0, 0
        stop = time.monotonic() + args.web_seconds
        window_from = sampler.now()

        def client() -> None:
            nonlocal requests_done, failures
            while time.monotonic() < stop:
                for path in paths:
                    try:
                        urllib.request.urlopen(base + path, timeout=10).read()
                        requests_done += 1
                    except Exception:
                        failures += 1

        # steady streaming into the feeder meanwhile: the next days of the same population's changes
        def trickle() -> None:
            more = FeedBacklog(300, 30, 7, start_ms=1_775_001_600_000).records()  # 2026-04-01
            while time.monotonic() < stop:
                for _ in range(max(1, int(args.rate))):
                    feed.send(*next(more))
                feed.producer.flush(5)
                time.sleep(1)

        threads = [threading.Thread(target=client) for _ in range(4)] + [threading.Thread(target=trickle)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        status = _get_json(f"http://127.0.0.1:{health}/status")
        for proc, name in ((web, "web"), (feeder, "web-feeder")):
            proc.stop()
            sampler.forget(name)
        fseries.steady_from = wseries.steady_from = window_from
        paths_failed = f", {failures} failed" if failures else ""
        print(f"  web: {requests_done} requests in {args.web_seconds:.0f} s{paths_failed}, "
              f"{wseries.processes} processes ({values['workers']} worker(s) x {values['threads']} threads); "
              f"feeder: {feed.sent - backlog_total} more records streamed, lag {status.get('lag')} at the end, "
              f"mismatches {({n: t['mismatches'] for n, t in status['topics'].items() if t['mismatches']})}",
              flush=True)
        return [wseries, fseries]
    finally:
        redis_server.stop()


def yaml_values() -> dict:
    import yaml

    return yaml.safe_load((REPO / "charts" / "marketing-engine" / "values.yaml").read_text())


def run_operator(env: Env, sampler: Sampler, args: argparse.Namespace) -> Series:
    from kubernetes import client

    from schemas import topics
    from tests.cluster.kube_apiserver import missing_binaries, start_kube_apiserver
    from tests.support.ksqldb_double import KsqlDbDouble
    from tests.support.procs import free_port

    missing = missing_binaries()
    if missing:
        raise RuntimeError(f"kube-apiserver/etcd missing ({', '.join(map(str, missing))}): `make kube-binaries`")
    kube = start_kube_apiserver(env.root / "kube")
    ksqldb = KsqlDbDouble(topics={t.name for t in topics.ALL_TOPICS}).start()
    try:
        api = kube.api_client()
        core = client.CoreV1Api(api)
        namespace = "marketing-engine"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        import yaml

        label = yaml.safe_load((REPO / "charts" / "marketing-engine" / "values.yaml").read_text())[
            "operator"]["configMapLabel"]
        key, _, value = label.partition("=")
        data = {p.name: p.read_text() for p in sorted((REPO / "ksql").glob("*.sql"))}
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="marketing-engine-ksql", labels={key: value or "true"}), data=data))
        port = free_port()
        proc = _spawn("ksql-operator", [str(BIN / "kopf"), "run", "--standalone", f"--namespace={namespace}",
                                        f"--liveness=http://127.0.0.1:{port}/healthz", "-m", "operators.ksql"], {
            "KUBECONFIG": str(kube.kubeconfig), "KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": "",
            "KSQLDB_URL": ksqldb.url, "WATCH_NAMESPACE": namespace, "KSQL_CONFIGMAP_LABEL": label,
            # no subject wait (it has its own tests): the topology is applied at once, then drift checks
            "KSQL_DRIFT_INTERVAL_SECONDS": "10", "SCHEMA_REGISTRY_URL": "",
            "LOG_LEVEL": "INFO", "LOG_JSON": "true"}, env.root)
        series = sampler.watch("ksql-operator", proc.proc.pid)
        time.sleep(args.operator_seconds)
        series.steady_from = sampler.now() - args.operator_seconds / 2
        applied = len(ksqldb.executed)
        proc.stop()
        sampler.forget("ksql-operator")
        print(f"  ksql-operator: {applied} statements applied to the ksqlDB double, drift checks every 10 s", flush=True)
        return series
    finally:
        ksqldb.stop()
        with contextlib.suppress(Exception):
            kube.stop()


# --- the table ------------------------------------------------------------------------------------------


def chosen(steady: float, peak: float) -> tuple[int, int]:
    request = math.ceil(max(steady * (1 + MARGIN_SHARE), steady + MARGIN_FLOOR_MIB) / 16) * 16
    limit = math.ceil(max(peak * (1 + LIMIT_HEADROOM), request) / 64) * 64
    return request, limit


def table(rows: list[Series]) -> str:
    lines = [f"{'process tree':<16} {'procs':>5} {'steady MiB':>10} {'peak MiB':>9} {'raw peak':>9} "
             f"{'sum VmHWM':>9} {'request':>8} {'limit':>6} {'margin':>7}"]
    for s in rows:
        request, limit = chosen(s.steady(), s.peak())
        lines.append(f"{s.name:<16} {s.processes:>5} {s.steady():>10.0f} {s.peak():>9.0f} {s.raw_peak():>9.0f} "
                     f"{s.hwm_mib:>9.0f} "
                     f"{request:>7}Mi {limit:>5}Mi {request - s.steady():>6.0f}M")
    lines.append(f"requests = steady + max({MARGIN_SHARE:.0%}, {MARGIN_FLOOR_MIB} MiB) rounded up to 16 MiB; "
                 f"limits = peak + {LIMIT_HEADROOM:.0%} rounded up to 64 MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="seed,spark,web,operator")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--heap", default=LAPTOP_HEAP)
    parser.add_argument("--java-options", default=LAPTOP_JAVA_OPTIONS)
    parser.add_argument("--malloc-arena-max", default=MALLOC_ARENA_MAX, help="'' = glibc's default")
    parser.add_argument("--rate", type=float, default=20.0, help="events/s of the steady producer")
    parser.add_argument("--catchup-timeout", type=float, default=480.0)
    parser.add_argument("--steady", type=float, default=150.0)
    parser.add_argument("--web-seconds", type=float, default=60.0)
    parser.add_argument("--operator-seconds", type=float, default=60.0)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    rows: list[Series] = []
    figures: dict[str, float] = {}
    print(f"bench_memory: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"Spark drivers local[2], heap {args.heap}, java options {args.java_options or '(default)'}, "
          f"MALLOC_ARENA_MAX={args.malloc_arena_max or '(default)'}", flush=True)
    with engines() as env, Sampler(args.interval) as sampler:
        steps: list[tuple[str, Callable[[], None]]] = []
        if "seed" in parts or "spark" in parts:
            steps.append(("seed", lambda: rows.append(run_seed(env, sampler))))
        if "spark" in parts:
            def spark() -> None:
                series, more = run_spark(env, sampler, args)
                rows.extend(series)
                figures.update(more)
            steps.append(("spark", spark))
        if "web" in parts:
            steps.append(("web", lambda: rows.extend(run_web(env, sampler, args))))
        if "operator" in parts:
            steps.append(("operator", lambda: rows.append(run_operator(env, sampler, args))))
        for name, step in steps:
            print(f"- {name}", flush=True)
            try:
                step()
            except Exception as exc:  # one part failing must not lose the others' figures
                print(f"  {name}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                      flush=True)
            print(table(rows), flush=True)
            save(args, figures, rows)
    print(table(rows))
    if "catchup_s" in figures:
        print(f"spark: backlog (1,000 customers x 90 days) scored after {figures['catchup_s']:.0f} s; "
              f"{figures.get('scored_records', 0):.0f} score records at the end")
    return 0


def save(args: argparse.Namespace, figures: dict[str, float], rows: list[Series]) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "figures": figures, "rows": [
            {**{k: v for k, v in asdict(s).items() if k != "samples"}, "steady": s.steady(), "peak": s.peak(),
             "raw_peak": s.raw_peak(),
             "samples": s.samples} for s in rows]}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
