"""Apache Kafka as an embedded service (`EMBEDDED_KAFKA=apache`): its jars through Maven, a KRaft node on disk.

One combined broker and controller on loopback, as the compose file runs it, with the same broker
settings (`BROKER_CONFIG`, checked against docker-compose.yml by tests/test_compose.py). The jars come
from Maven Central into Maven's local repository once; their classpath is kept in RUN_DIR, so later
starts ask Maven nothing. The storage folder RUN_DIR/kafka-<port> is formatted once for `CLUSTER_ID`
and kept: a restart finds its topics, records and committed offsets. Everything that can fail (Java,
Maven, the fetch, the ports, a folder of another cluster) is checked before anything starts.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from settings import PROJECT_ROOT

POM = PROJECT_ROOT / "stack" / "apache-kafka" / "pom.xml"
LOG_CONFIG = POM.parent / "log4j2.properties"
# The compose file's CLUSTER_ID: one id for every Jobstream KRaft node (tests/test_compose.py).
CLUSTER_ID = "QD2_wz9uR3W-ax35-V3N2g"
# What the compose file sets as KAFKA_<NAME> (tests/test_compose.py): the broker's behaviour that
# Jobstream's code and tests rely on. Listeners and folders are the embedding's own.
BROKER_CONFIG = {
    "node.id": "1",
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    # The app creates each job's topic itself (1 partition, KAFKA_REPLICATION_FACTOR replicas).
    "auto.create.topics.enable": "false",
    "num.partitions": "1",
    # A single node: internal topics (consumer offsets, transactions) cannot have more replicas.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}
JAVA_MIN = 17
# A small heap for one node of a few thousand topics; compose gives its container 2 GB.
JVM_OPTIONS = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
INSTALL_HINT = "apt-get install -y default-jre-headless maven"


class KafkaSetupError(RuntimeError):
    """Apache Kafka cannot be prepared here; the message says why and what to do."""


def kafka_version() -> str:
    """The broker's version, from the pom (the one place it is written)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    assert found, f"no kafka.version in {POM}"
    return found.group(1)


def java_major(java: str) -> int:
    """The major version of `java` (17 for "17.0.15"), from `java -version`."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not found:
        raise KafkaSetupError(f"could not read the version of {java}: {out.strip()[:200]}")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def find_tools() -> tuple[str, str]:
    """java (17 or newer) and mvn, or KafkaSetupError saying what to install."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        missing = " and ".join(name for name, path in (("Java", java), ("Maven", mvn)) if not path)
        raise KafkaSetupError(f"EMBEDDED_KAFKA=apache needs {missing}: {INSTALL_HINT}")
    if (major := java_major(java)) < JAVA_MIN:
        raise KafkaSetupError(f"Apache Kafka needs Java {JAVA_MIN} or newer, {java} is {major}: {INSTALL_HINT}")
    return java, mvn


def classpath(run_dir: Path, mvn: str) -> str:
    """The broker's classpath: kept in RUN_DIR after the first fetch; Maven is asked only when it is
    missing or names a jar that is gone. A failed fetch leaves an earlier classpath file as it was."""
    kept = run_dir / "apache-kafka" / f"classpath-{kafka_version()}.txt"
    if kept.exists():
        jars = kept.read_text().strip()
        if jars and all(Path(jar).exists() for jar in jars.split(os.pathsep)):
            return jars
    kept.parent.mkdir(parents=True, exist_ok=True)
    partial = kept.with_suffix(".partial")
    command = [mvn, "-q", "-B", "-f", str(POM), "dependency:build-classpath", "-Dmdep.includeScope=runtime"]
    command += [f"-Dmdep.outputFile={partial}", "-Dstyle.color=never"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not partial.exists():
        # Maven's first error line is its reason; the lines after it are advice on running Maven again.
        printed = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr).splitlines()
        errors = [line.removeprefix("[ERROR] ").strip() for line in printed if line.startswith("[ERROR] ")]
        reason = next((error for error in errors if error), " ".join(printed[-3:]))[:600]
        raise KafkaSetupError(f"Maven could not fetch Apache Kafka {kafka_version()}: {reason}")
    partial.replace(kept)
    return kept.read_text().strip()


def port_free(port: int) -> bool:
    """Whether a server may listen on the loopback port (as the broker binds: a closed connection's
    TIME_WAIT does not hold it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def read_properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


@dataclass(frozen=True)
class Node:
    """One KRaft node on 127.0.0.1: clients on `port`, its controller on `port + 1`, data in `data_dir`."""

    port: int
    data_dir: Path

    @classmethod
    def for_run_dir(cls, run_dir: Path, port: int) -> Node:
        return cls(port, run_dir / f"kafka-{port}")

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def config_path(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.properties")

    def config(self) -> dict[str, str]:
        listeners = f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
        return {
            **BROKER_CONFIG,
            "controller.quorum.voters": f"{BROKER_CONFIG['node.id']}@127.0.0.1:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "log.dirs": str(self.data_dir),
        }

    def wipe(self) -> None:
        """Delete the node's log (for a run that must start on an empty broker: the tests, the bench)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def check_storage(self) -> bool:
        """Whether the folder is formatted already; KafkaSetupError if it is another cluster's."""
        meta = self.data_dir / "meta.properties"
        if not meta.exists():
            return False
        cluster = read_properties(meta).get("cluster.id")
        if cluster != CLUSTER_ID:
            raise KafkaSetupError(
                f"{self.data_dir} holds another Kafka cluster's log (cluster id {cluster}, Jobstream's is "
                f"{CLUSTER_ID}); it is left as it is. To start afresh, losing its topics: rm -rf {self.data_dir}"
            )
        return True

    def prepare(self) -> list[str]:
        """Check and fetch everything, format the storage once; return the command that runs the node."""
        java, mvn = find_tools()
        formatted = self.check_storage()
        for port in (self.port, self.controller_port):
            if not port_free(port):
                raise KafkaSetupError(f"port {port} on 127.0.0.1 is taken by a program that is not a Kafka broker")
        jars = classpath(self.data_dir.parent, mvn)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("".join(f"{key}={value}\n" for key, value in self.config().items()))
        base = [java, *JVM_OPTIONS, f"-Dlog4j2.configurationFile={LOG_CONFIG}", "-cp", jars]
        if not formatted:
            storage = [*base, "kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c", str(self.config_path)]
            done = subprocess.run(storage, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise KafkaSetupError(f"formatting {self.data_dir} failed: {(done.stderr or done.stdout)[-600:]}")
        return [*base, "kafka.Kafka", str(self.config_path)]
