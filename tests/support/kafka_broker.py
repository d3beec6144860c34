"""A real Apache Kafka broker (KRaft, combined broker+controller) from the Maven Central jars."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from tests.support.paths import KAFKA_JARS
from tests.support.procs import ServerProcess, free_port, port_open

_LOG4J2 = """\
Configuration:
  name: test-broker
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java not found: the Kafka broker needs a JDK 17+ on PATH")
    return java


@dataclass
class KafkaBroker:
    bootstrap: str
    process: ServerProcess

    def admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topics(self, names: list[str] | tuple[str, ...], partitions: int = 1) -> None:
        """Create topics (existing ones are fine) and wait until their metadata answers."""
        admin = self.admin()
        existing = set(admin.list_topics(timeout=10).topics)
        new = [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names if n not in existing]
        if new:
            for fut in admin.create_topics(new, operation_timeout=30).values():
                fut.result(30)
        for name in names:
            self.process.wait_until(
                lambda n=name: not admin.list_topics(n, timeout=5).topics[n].error, 30, f"topic {name} ready"
            )

    def stop(self) -> None:
        self.process.stop()


def start_broker(workdir: Path, heap: str = "512m") -> KafkaBroker:
    if not KAFKA_JARS.is_dir() or not any(KAFKA_JARS.glob("kafka_2.13-*.jar")):
        raise RuntimeError(f"Kafka jars missing in {KAFKA_JARS}: run `make jars`")
    port, controller_port = free_port(), free_port()
    data = workdir / "kraft"
    data.mkdir(parents=True, exist_ok=True)
    props = workdir / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=4",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.flush.interval.messages=1000000",
            ]
        )
        + "\n"
    )
    log4j = workdir / "log4j2.yaml"
    log4j.write_text(_LOG4J2)
    classpath = f"{KAFKA_JARS}/*"
    java = _java()
    jvm = [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseSerialGC", f"-Dlog4j2.configurationFile={log4j}",
           "-Djava.awt.headless=true"]
    fmt = subprocess.run(
        [java, *jvm, "-cp", classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={_cluster_id()}", "-c", str(props)],
        capture_output=True, text=True, timeout=120,
    )
    if fmt.returncode != 0:
        raise RuntimeError(f"kafka storage format failed ({fmt.returncode}):\n{fmt.stdout}\n{fmt.stderr}")
    proc = ServerProcess("kafka", [java, *jvm, "-cp", classpath, "kafka.Kafka", str(props)], workdir / "kafka.log")
    bootstrap = f"127.0.0.1:{port}"
    proc.wait_until(lambda: port_open(port), 120, "listening")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    proc.wait_until(lambda: admin.list_topics(timeout=2).brokers, 60, "answering metadata")
    return KafkaBroker(bootstrap, proc)


def _cluster_id() -> str:
    # KRaft wants a base64url-encoded 16-byte UUID (what `kafka-storage random-uuid` prints). One in 64
    # starts with "-": passed as `--cluster-id=<id>`, never as a separate argument the parser takes for a flag.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
