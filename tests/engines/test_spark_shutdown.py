"""SIGTERM (what Kubernetes sends a pod) stops a streaming job cleanly, mid-batch, while records keep
arriving; a restart then leaves every published record in Delta exactly once.

The job runs as its own process (``python -m spark.jobs.bronze``), as in the cluster, against the real
broker and the Schema Registry double."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from schemas import serde, topics
from tests.engines.test_spark_pipeline import T0, order
from tests.support import pipeline
from tests.support.paths import REPO, SPARK_JARS

ORD = topics.ORDER_PLACED
NOISE = ("Traceback", "Py4JError", "reentrant", "Exception")


def _job_env(settings, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "KAFKA_", "DELTA_", "TRIGGER_"))}
    return {
        **base,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "DELTA_ROOT": settings.delta_root,
        "TOPIC_PREFIX": settings.topic_prefix,
        "SPARK_JARS_DIR": str(SPARK_JARS),
        "SPARK_MASTER": "local[2]",
        **extra,
    }


def _start(settings, log: Path, **extra: str) -> subprocess.Popen:
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "spark.jobs.bronze"], cwd=REPO, env=_job_env(settings, **extra),
                                stdout=subprocess.DEVNULL, stderr=err)


def _summary(log: str) -> str:
    """The log without JVM stack frames (what a failing assertion shows)."""
    lines = [line for line in log.splitlines() if not line.lstrip().startswith(("at ", "... "))]
    return "\n".join(lines[-80:])


def _batches(checkpoint: str, kind: str) -> set[int]:
    folder = Path(checkpoint, kind)
    return {int(p.name) for p in folder.glob("[0-9]*")} if folder.exists() else set()


class Orders(threading.Thread):
    """Publishes orders with distinct ids until stopped; remembers every id the broker acknowledged."""

    def __init__(self, broker, settings):
        super().__init__(daemon=True)
        self.topic = settings.topic(ORD)
        self.codec = serde.TopicSerde(serde.registry_client(settings.schema_registry_url), self.topic)
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all",
                                  "linger.ms": 5})
        self.acked: list[str] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def _ack(self, err, msg) -> None:  # noqa: ANN001
        if err is None:
            self.acked.append(msg.key().decode())

    def run(self) -> None:
        n = 0
        try:
            while not self.halt.is_set():
                for _ in range(5):
                    oid = f"o{n:06d}"
                    self.producer.produce(self.topic.name, key=oid.encode(),
                                          value=self.codec.serialize(order(oid, f"c{n % 7}", T0 + n, 1.0)),
                                          on_delivery=self._ack)
                    n += 1
                self.producer.poll(0)
                time.sleep(0.1)
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            assert self.producer.flush(30) == 0

    def finish(self) -> list[str]:
        self.halt.set()
        self.join(60)
        if self.error is not None:
            raise self.error
        return list(self.acked)


def _wait(proc: subprocess.Popen, log: Path, ready, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            pytest.fail(f"bronze exited with {proc.returncode} before {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"bronze not {what} within {timeout:.0f}s:\n{log.read_text()[-4000:]}")


def test_sigterm_mid_batch_exits_cleanly_and_a_restart_loses_and_duplicates_nothing(
    request, tmp_path, kafka_broker, schema_registry, delta_root
):
    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(delta_root), pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, settings)
    checkpoint = settings.checkpoint("bronze", "sources")
    orders = Orders(kafka_broker, settings)
    orders.start()
    log = tmp_path / "bronze-1.log"
    job = _start(settings, log, TRIGGER_INTERVAL="1 second", MAX_OFFSETS_PER_TRIGGER="300")
    try:
        # Two batches done, so the stream is really running; then SIGTERM right after the next batch has
        # planned its offsets and before it commits: the stop lands inside a micro-batch.
        _wait(job, log, lambda: len(_batches(checkpoint, "commits")) >= 2, 300, "two batches committed")
        _wait(job, log, lambda: max(_batches(checkpoint, "offsets")) > max(_batches(checkpoint, "commits")),
              120, "inside a batch")
        in_flight = max(_batches(checkpoint, "offsets"))
        job.send_signal(signal.SIGTERM)
        code = job.wait(120)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(30)
        if job.returncode != 0:
            orders.halt.set()
    stderr = log.read_text()
    assert code == 0, _summary(stderr)
    assert not [word for word in NOISE if word in stderr], _summary(stderr)
    assert "stopped on SIGTERM" in stderr  # it says what it did, in one line
    print(f"\nSIGTERM during batch {in_flight}; batches committed at stop: {sorted(_batches(checkpoint, 'commits'))}")

    time.sleep(1.0)  # records keep arriving while the job is down
    published = orders.finish()
    log2 = tmp_path / "bronze-2.log"
    again = _start(settings, log2, TRIGGER_INTERVAL="available-now")
    assert again.wait(300) == 0, log2.read_text()[-4000:]

    spark = request.getfixturevalue("spark")  # only now: one JVM fewer while the job runs
    rows = spark.read.format("delta").load(settings.table("bronze", "order_placed"))
    ids = [r.order_id for r in rows.select("order_id").collect()]
    print(f"published {len(published)} orders; bronze holds {len(ids)} rows, {len(set(ids))} distinct")
    assert len(published) > 0 and len(set(published)) == len(published)
    assert sorted(ids) == sorted(published), "every published order exactly once"


def test_sigterm_between_triggers_exits_cleanly(tmp_path, kafka_broker, schema_registry, delta_root):
    """The common case in the cluster (10 s trigger, shorter batches): the query sleeps until its next
    trigger when the signal comes; the stop interrupts the sleep and nothing else."""
    settings = pipeline.job_settings(kafka_broker.bootstrap, schema_registry.url, str(delta_root), pipeline.new_prefix())
    pipeline.create_topics(kafka_broker, settings)
    pipeline.produce(kafka_broker, settings, [(ORD, f"o{i}", order(f"o{i}", "c1", T0 + i, 1.0)) for i in range(20)])
    checkpoint = settings.checkpoint("bronze", "sources")
    log = tmp_path / "bronze.log"
    job = _start(settings, log, TRIGGER_INTERVAL="20 seconds")
    try:
        _wait(job, log, lambda: 0 in _batches(checkpoint, "commits"), 300, "done with the first batch")
        time.sleep(1.0)  # well inside the 20 s until the next trigger
        job.send_signal(signal.SIGTERM)
        code = job.wait(60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(30)
    stderr = log.read_text()
    assert code == 0, _summary(stderr)
    assert not [word for word in NOISE if word in stderr], _summary(stderr)
    assert "stopped on SIGTERM" in stderr
    assert _batches(checkpoint, "offsets") == _batches(checkpoint, "commits") == {0}


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as f:
            found |= {int(c) for c in f.read().split()}
    return found


def test_sigterm_while_a_job_waits_for_its_upstream_table_exits_at_once_with_its_jvm(tmp_path, delta_root):
    """silver waiting for bronze's tables (jobs start in any order in the cluster) is stopped too: no
    query runs yet, so the process ends at once, taking the JVM with it."""
    log = tmp_path / "silver.log"
    with open(log, "wb") as err:
        job = subprocess.Popen([sys.executable, "-m", "spark.jobs.silver"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=err, env={**os.environ, "DELTA_ROOT": str(delta_root),
                                                "SPARK_JARS_DIR": str(SPARK_JARS), "SPARK_MASTER": "local[1]"})
    try:
        _wait(job, log, lambda: "waiting for upstream table" in log.read_text(), 300, "waiting for bronze")
        jvms = _children(job.pid)
        assert jvms, "the JVM is a child of the job"
        job.send_signal(signal.SIGTERM)
        assert job.wait(30) == 0
    finally:
        if job.poll() is None:
            job.kill()
    stderr = log.read_text()
    assert "silver: SIGTERM during start-up; exiting before any query ran" in stderr
    assert not [word for word in NOISE if word in stderr], _summary(stderr)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in jvms) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in jvms), "the JVM outlived the job"
