"""`EMBEDDED_KAFKA=apache` (issue 29): Apache Kafka fetched through Maven and run as one KRaft node by
`make run`, whose log outlives a Ctrl-C; and what it says, starting nothing, when it cannot start."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from settings import PROJECT_ROOT, Settings, load_settings
from stack import apache_kafka, services
from stack.apache_kafka import CLUSTER_ID, KafkaSetupError, Node
from stack.processes import VENV_BIN
from stack.services import first_server
from tests.conftest import free_port_pair, wait_for
from tests.test_durability import commit_offset, committed_offset
from tests.test_stack import descendants, launch_env, start_launch, stop_launch


@pytest.fixture
def apache(tmp_path: Path) -> Settings:
    """Settings for `make run` with Apache Kafka on free ports, its run folder the test's."""
    port = free_port_pair()
    return load_settings(
        {
            "REDIS_URL": f"redis://127.0.0.1:{free_port_pair()}/0",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "EMBEDDED_KAFKA": "apache",
            "RUN_DIR": str(tmp_path),
        }
    )


@contextlib.contextmanager
def launched(settings: Settings) -> Iterator[list[str]]:
    """`python -m stack.launch` (what `make run` runs) while the body runs, from when its broker answers;
    then stopped as Ctrl-C stops it, which must end it cleanly. Yields a list that then holds its output."""
    frontend, backend = str(free_port_pair()), str(free_port_pair())
    process = start_launch(launch_env(settings, FRONTEND_PORT=frontend, BACKEND_PORT=backend))
    printed: list[str] = []
    try:
        wait_for(lambda: process.poll() is not None or services.kafka_answers(settings.kafka_bootstrap_servers),
                 120, "the launch's Apache Kafka to answer", every_s=0.2)  # fmt: skip
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        children = descendants(process.pid)
        yield printed
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=90)
    except BaseException:
        stop_launch(process)
        raise
    printed.append(output)
    assert process.returncode == 0, output[-3000:]
    wait_for(lambda: not [pid for pid in children if Path(f"/proc/{pid}").exists()], 30, "every process to be gone")


def test_make_run_with_apache_kafka_keeps_topics_records_and_offsets_across_a_ctrl_c(apache: Settings) -> None:
    bootstrap = apache.kafka_bootstrap_servers
    with launched(apache) as first:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("kept", 1, 1)])["kept"].result(30)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for n in range(100):
            producer.produce("kept", f"record {n}".encode())
        assert producer.flush(30) == 0
        commit_offset(bootstrap, "kept-group", TopicPartition("kept", 0, 42))
        # Unreachable from other machines: its clients' and its controller's ports are on loopback only.
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp") if c.status == "LISTEN"}
        port = first_server(bootstrap)[1]
        bound = [ipaddress.ip_address(ip) for ip, at in listening if at in (port, port + 1)]
        # The JVM listens on IPv6 sockets: 127.0.0.1 shows as ::ffff:127.0.0.1.
        bound4 = {getattr(ip, "ipv4_mapped", None) or ip for ip in bound}
        assert len(bound) == 2, listening
        assert bound4 == {ipaddress.ip_address("127.0.0.1")}, listening
    node = Node.for_run_dir(apache.run_dir, first_server(bootstrap)[1])
    said = f"starting Apache Kafka {apache_kafka.kafka_version()} on {bootstrap}: its log in {node.data_dir}"
    assert said in first[0]
    assert not services.kafka_answers(bootstrap), "Ctrl-C stopped the broker"
    assert (node.data_dir / "kept-0").is_dir(), "the topic's partition is on disk"

    with launched(apache) as second:
        assert records(bootstrap, "kept") == [f"record {n}" for n in range(100)]
        assert committed_offset(bootstrap, "kept-group", TopicPartition("kept", 0)) == 42
    assert "formatting" not in second[0].lower(), "the storage is formatted once"


def records(bootstrap: str, topic: str) -> list[str]:
    """Every record of the topic's partition 0, read to its end."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = consumer.poll(1)
        if message is None:
            continue
        if error := message.error():
            if error.code() == KafkaError._PARTITION_EOF:
                break
            raise KafkaException(error)
        values.append(bytes(message.value() or b"").decode())
    consumer.close()
    return values


def test_without_java_or_maven_make_run_says_what_to_install_in_one_line_and_starts_nothing(apache: Settings) -> None:
    env = {**launch_env(apache), "PATH": str(VENV_BIN)}  # the venv's tools, no java, no mvn
    result = subprocess.run([sys.executable, "-m", "stack.launch"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "jobstream: EMBEDDED_KAFKA=apache needs Java and Maven: apt-get install -y default-jre-headless maven"
    ]
    assert "starting" not in result.stdout
    assert not (apache.run_dir / "logs").exists(), "no process was started"


def test_a_storage_folder_of_another_cluster_is_refused_with_how_to_reset_it_and_left_as_it_is(
    apache: Settings,
) -> None:
    node = Node.for_run_dir(apache.run_dir, first_server(apache.kafka_bootstrap_servers)[1])
    node.data_dir.mkdir(parents=True)
    meta = node.data_dir / "meta.properties"
    meta.write_text("version=1\ncluster.id=SomeOtherClusterId0000\nnode.id=1\n")
    (node.data_dir / "its-topic-0").mkdir()
    with pytest.raises(services.ServiceError) as refused:
        services.plan_kafka(apache)
    message = str(refused.value)
    assert "SomeOtherClusterId0000" in message
    assert CLUSTER_ID in message
    assert f"rm -rf {node.data_dir}" in message
    assert meta.read_text().startswith("version=1\ncluster.id=SomeOtherClusterId0000")
    assert (node.data_dir / "its-topic-0").is_dir()


@pytest.mark.parametrize("which", ["clients", "controller"])
def test_a_port_taken_by_another_program_is_said_at_once(apache: Settings, which: str) -> None:
    port = first_server(apache.kafka_bootstrap_servers)[1]
    taken = port if which == "clients" else port + 1
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        started = time.monotonic()
        with pytest.raises(services.ServiceError, match=f"port {taken} on 127.0.0.1 is taken"):
            services.plan_kafka(apache)
    assert time.monotonic() - started < 10, "said, not retried"


@pytest.fixture
def broken_pom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pom of the same Kafka version that also asks for a jar Maven Central does not have."""
    pom = tmp_path / "pom.xml"
    missing = "<groupId>dev.jobstream.absent</groupId><artifactId>none</artifactId><version>0.0.1</version>"
    pom.write_text(
        apache_kafka.POM.read_text().replace("</dependencies>", f"<dependency>{missing}</dependency></dependencies>")
    )
    monkeypatch.setattr(apache_kafka, "POM", pom)
    return pom


def test_a_failed_maven_fetch_names_the_reason_and_leaves_the_earlier_classpath_usable(
    apache: Settings, broken_pom: Path
) -> None:
    mvn = apache_kafka.find_tools()[1]
    kept = apache.run_dir / "apache-kafka" / f"classpath-{apache_kafka.kafka_version()}.txt"
    kept.parent.mkdir(parents=True)
    earlier = os.pathsep.join(str(path) for path in sorted(Path(sys.executable).parent.parent.glob("lib*"))[:1])
    kept.write_text(earlier)
    assert apache_kafka.classpath(apache.run_dir, mvn) == earlier, "a kept classpath asks Maven nothing"

    kept.write_text(earlier + os.pathsep + "/gone/kafka.jar")  # a jar of it is gone: fetch again
    with pytest.raises(KafkaSetupError, match=r"Maven could not fetch Apache Kafka .*dev\.jobstream\.absent"):
        apache_kafka.classpath(apache.run_dir, mvn)
    assert kept.read_text() == earlier + os.pathsep + "/gone/kafka.jar", "the earlier file is left as it was"
    assert not re.search(r"partial", " ".join(p.name for p in kept.parent.iterdir()))
