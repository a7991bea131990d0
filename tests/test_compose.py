"""The production docker-compose.yml: docker-compose accepts it, and it has the deployment's shape.

docker-compose cannot run containers on a machine without a Docker engine, but `config` resolves
and validates the file offline and prints it normalized (anchors merged, defaults filled in). The
checks read that output: PyYAML is not a dependency, so they look at each service's block of text.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

import pytest

from settings import ENVIRONMENTS, PROJECT_ROOT, load_settings
from stack.apache_kafka import BROKER_CONFIG, CLUSTER_ID, kafka_version
from stack.processes import WORKER_ENV
from tests.conftest import BOTH_LAYOUTS


def compose_command() -> list[str] | None:
    """Compose v2 (the `docker compose` plugin), else the standalone `docker-compose`."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


COMPOSE = compose_command()
# Under CI a skip fails the run (tests/conftest.py): CI must have one of them.
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="neither `docker compose` nor docker-compose is installed")


# What a deployment sets in its shell (README: Production); the compose file refuses to run without it.
DEPLOYMENT_ENV = {"SESSION_SECRET": "s" * 40, "POSTGRES_PASSWORD": "p" * 24}


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [*COMPOSE, "-f", "docker-compose.yml", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **DEPLOYMENT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def normalized() -> str:
    result = compose("config")
    assert result.returncode == 0, result.stderr
    return result.stdout


def top_level(text: str, key: str) -> str:
    """The lines under a top-level key (`services:`, `volumes:`), up to the next top-level key."""
    match = re.search(rf"^{key}:\n((?:[ \t]+.*\n|\n)*)", text, re.MULTILINE)
    assert match, f"no top-level {key!r} in the normalized file"
    return match.group(1)


def service(text: str, name: str) -> str:
    """One service's block of the normalized file."""
    services = top_level(text, "services")
    indent = services[: len(services) - len(services.lstrip(" "))]  # the first service sets the indent
    match = re.search(rf"^{indent}{re.escape(name)}:\n((?:{indent} +.*\n)*)", services, re.MULTILINE)
    assert match, f"no service {name!r}"
    return match.group(1)


def named_volumes(text: str) -> set[str]:
    return set(re.findall(r"^ +([\w.-]+):", top_level(text, "volumes"), re.MULTILINE))


def value_list(block: str, key: str) -> list[str]:
    """A key's value as a list of words: a YAML list of scalars, or one string split like a shell."""
    match = re.search(rf"^( *){re.escape(key)}:(.*)\n((?:\1 *- .*\n)*)", block, re.MULTILINE)
    assert match, f"no {key!r} in\n{block}"
    if match.group(2).strip():
        return shlex.split(match.group(2).strip())
    return [item.strip().removeprefix("- ").strip("'\"") for item in match.group(3).splitlines()]


def env(block: str, name: str) -> str:
    match = re.search(rf"^ +{re.escape(name)}: ['\"]?(.*?)['\"]?$", block, re.MULTILINE)
    assert match, f"{name} is not set in\n{block}"
    return match.group(1)


def mounts_named_volume(text: str, block: str, target: str) -> bool:
    """Whether the service mounts a top-level named volume at `target` (short or long syntax)."""
    for name in named_volumes(text):
        short = rf"^ *- {re.escape(name)}:{re.escape(target)}(:rw)?$"
        long = rf"source: {re.escape(name)}\n(?:.*\n)*? *target: {re.escape(target)}$"
        if re.search(short, block, re.MULTILINE) or re.search(long, block, re.MULTILINE):
            return True
    return False


def test_compose_file_is_valid() -> None:
    result = compose("config", "-q")
    assert result.returncode == 0, result.stderr
    assert "is not set" not in result.stderr, result.stderr


def test_kafka_runs_kraft_on_a_pinned_official_image_with_persistent_logs(normalized: str) -> None:
    kafka = service(normalized, "kafka")
    assert re.search(r"^ +image: apache/kafka:[34]\.\d+\.\d+$", kafka, re.MULTILINE), kafka
    assert set(env(kafka, "KAFKA_PROCESS_ROLES").split(",")) == {"broker", "controller"}
    assert "kafka:9092" in env(kafka, "KAFKA_ADVERTISED_LISTENERS")
    assert mounts_named_volume(normalized, kafka, env(kafka, "KAFKA_LOG_DIRS")), kafka
    assert "healthcheck:" in kafka


# The compose broker's settings that name its network and folders, not its behaviour.
KAFKA_PLACES = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"}


def test_the_tested_apache_kafka_is_the_compose_one_in_version_cluster_and_broker_settings(normalized: str) -> None:
    # The embedded Apache Kafka of the tests and `EMBEDDED_KAFKA=apache make run` (stack/apache_kafka.py)
    # is the broker compose runs: a drift in either file fails here.
    kafka = service(normalized, "kafka")
    image = re.search(r"^ +image: apache/kafka:(\S+)$", kafka, re.MULTILINE)
    assert image, kafka
    assert image.group(1) == kafka_version()
    assert env(kafka, "CLUSTER_ID") == CLUSTER_ID
    # The image turns KAFKA_A_B into the broker's a.b.
    composed = {
        name.removeprefix("KAFKA_").lower().replace("_", "."): value
        for name, value in re.findall(r"^ +(KAFKA_[A-Z_]+): ['\"]?(.*?)['\"]?$", kafka, re.MULTILINE)
    }
    assert {key: value for key, value in composed.items() if key not in KAFKA_PLACES} == BROKER_CONFIG
    assert composed.keys() >= KAFKA_PLACES


def test_the_apps_topic_settings_in_compose_are_those_the_suite_runs_with(normalized: str) -> None:
    # The job log's topics (layout, partitions, replicas) as compose sets them are tested: the suite's
    # settings (the test environment) hold the same values, and the layout is one of BOTH_LAYOUTS.
    block = service(normalized, "worker")
    tested = load_settings(ENVIRONMENTS["test"])
    assert env(block, "JOB_LOG_LAYOUT") in BOTH_LAYOUTS.args[1]
    assert int(env(block, "JOB_LOG_PARTITIONS")) == tested.job_log_partitions
    assert int(env(block, "KAFKA_REPLICATION_FACTOR")) == tested.kafka_replication_factor
    assert "EMBEDDED_KAFKA" not in block, "compose runs its own broker; the app embeds none"


def test_redis_appends_to_a_named_volume_and_refuses_rather_than_evicts_when_full(normalized: str) -> None:
    redis = service(normalized, "redis")
    command = value_list(redis, "command")
    assert command[command.index("--appendonly") + 1] == "yes", command
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction", command
    assert command[command.index("--maxmemory") + 1] == "512mb", command
    assert mounts_named_volume(normalized, redis, "/data"), redis
    assert "healthcheck:" in redis


@pytest.mark.parametrize("name", ["app", "worker", "beat", "history"])
def test_app_processes_reach_the_services_once_they_are_healthy(normalized: str, name: str) -> None:
    block = service(normalized, name)
    assert env(block, "REDIS_URL").startswith("redis://redis:6379/")
    assert env(block, "KAFKA_BOOTSTRAP_SERVERS") == "kafka:9092"
    assert env(block, "JOB_LOG_LAYOUT") == "shared"
    assert env(block, "HISTORY_DATABASE_URL") == f"postgresql://jobstream:{'p' * 24}@postgres:5432/jobstream"
    for dependency in ("redis", "kafka", "postgres"):
        assert re.search(rf"^ +{dependency}:\n +condition: service_healthy$", block, re.MULTILINE), block
    assert "restart: unless-stopped" in block


def test_app_keeps_reflex_state_in_redis_apart_from_the_jobs(normalized: str) -> None:
    app = service(normalized, "app")
    reflex_redis = env(app, "REFLEX_REDIS_URL")
    assert reflex_redis.startswith("redis://redis:6379/")
    assert reflex_redis != env(app, "REDIS_URL")
    assert value_list(app, "command")[:4] == ["reflex", "run", "--env", "prod"]


def test_worker_sends_task_events_and_hands_its_jobs_back_on_sigterm(normalized: str) -> None:
    worker = service(normalized, "worker")
    command = value_list(worker, "command")
    assert command[:4] == ["celery", "-A", "tasks.worker.celery_app", "worker"], command
    assert "-E" in command
    # `docker compose stop` sends SIGTERM: the worker's running jobs go back to the queue at once.
    for name, value in WORKER_ENV.items():
        assert env(worker, name) == value


def test_the_worker_and_the_app_load_the_same_job_modules_from_the_callers_shell() -> None:
    result = compose("config", env={"JOB_MODULES": "myteam.jobs,myteam.reports"})
    assert result.returncode == 0, result.stderr
    for name in ("app", "worker"):
        assert env(service(result.stdout, name), "JOB_MODULES") == "myteam.jobs,myteam.reports"


def test_the_app_is_published_on_this_machine_only(normalized: str) -> None:
    app = service(normalized, "app")
    assert re.search(r"host_ip: 127\.0\.0\.1|- 127\.0\.0\.1:3000:3000", app), app
    assert "0.0.0.0:3000" not in app


def test_the_app_will_not_run_without_a_session_secret_from_the_callers_shell() -> None:
    result = compose("config", env={"SESSION_SECRET": ""})  # compose's `:?` refuses empty as unset
    assert result.returncode != 0
    assert "set SESSION_SECRET" in result.stderr
    given = compose("config", env={"SESSION_SECRET": "k" * 48})
    assert env(service(given.stdout, "app"), "SESSION_SECRET") == "k" * 48


@pytest.mark.parametrize("name", ["kafka", "redis", "postgres", "worker", "beat", "history", "app"])
def test_every_service_has_memory_and_process_limits(normalized: str, name: str) -> None:
    block = service(normalized, name)
    assert re.search(r"^ +mem_limit: \S+", block, re.MULTILINE), block
    assert re.search(r"^ +pids_limit: \d+", block, re.MULTILINE), block


def test_the_history_consumer_runs_supervised_into_a_postgres_with_its_own_volume_and_password(normalized: str) -> None:
    history = service(normalized, "history")
    assert value_list(history, "command") == ["python", "-m", "tasks.history", "run"]
    postgres = service(normalized, "postgres")
    assert re.search(r"image: postgres:\d+\.\d+", postgres), postgres
    assert mounts_named_volume(normalized, postgres, "/var/lib/postgresql/data"), postgres
    assert "ports:" not in postgres  # inside the compose network only
    assert "healthcheck:" in postgres
    refused = compose("config", env={"POSTGRES_PASSWORD": ""})
    assert refused.returncode != 0
    assert "set POSTGRES_PASSWORD" in refused.stderr


def test_api_tokens_are_kept_on_a_volume_of_the_app(normalized: str) -> None:
    assert mounts_named_volume(normalized, service(normalized, "app"), "/app/.run")


def test_the_image_holds_no_tests_benchmarks_or_dev_requirements() -> None:
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {"tests", "bench", "requirements-dev.txt", ".venv", ".run"} <= set(ignored)
    base = re.search(r"^FROM (\S+)", (PROJECT_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert base, "no FROM"
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base[1]), base[1]
