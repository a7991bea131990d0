"""The launch: embedded services start and answer, reused ones are left alone, the app serves."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from confluent_kafka.admin import AdminClient

from settings import PROJECT_ROOT, Settings, load_settings
from stack import services
from stack.processes import free_port, http_ok
from tests.conftest import WebApp, wait_for


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def fresh(tmp_path: Path) -> Settings:
    """Settings naming free ports: nothing answers there, so everything must be embedded."""
    return load_settings(
        {
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "RUN_DIR": str(tmp_path),
        }
    )


def test_embedded_redis_and_broker_start_on_free_ports_and_answer(fresh: Settings) -> None:
    planned = services.plan(fresh)
    assert [s.embedded for s in planned] == [True, True]
    running = [services.start(s, fresh) for s in planned]
    try:
        assert redis.Redis.from_url(fresh.redis_url).ping()
        assert services.kafka_answers(fresh.kafka_bootstrap_servers)
        metadata = AdminClient({"bootstrap.servers": fresh.kafka_bootstrap_servers}).list_topics(timeout=5)
        assert metadata.brokers, "a real metadata answer names the broker"
    finally:
        for r in running:
            r.stop()
    assert not port_answers(planned[0].port)
    assert not port_answers(planned[1].port)


def test_services_that_answer_are_reused(settings: Settings) -> None:
    # The session's Redis and broker answer (conftest started or found them).
    assert [s.embedded for s in services.plan(settings)] == [False, False]


def test_a_remote_service_that_does_not_answer_is_an_error_not_an_embed(tmp_path: Path) -> None:
    remote = load_settings({"REDIS_URL": "redis://192.0.2.1:6379/0", "RUN_DIR": str(tmp_path)})
    with pytest.raises(services.ServiceError, match="does not answer"):
        services.plan_redis(remote)


def launch_env(fresh: Settings, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "REDIS_URL": fresh.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": fresh.kafka_bootstrap_servers,
        "EMBEDDED_KAFKA": fresh.embedded_kafka,
        "RUN_DIR": str(fresh.run_dir),
        **extra,
    }


def start_launch(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stack.launch"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.fixture
def launch(fresh: Settings) -> Iterator[subprocess.Popen[str]]:
    """`python -m stack.launch` (what `make run` runs) on free ports, with a reused Redis."""
    frontend, backend = free_port(), free_port()
    env = launch_env(
        fresh,
        FRONTEND_PORT=str(frontend),
        BACKEND_PORT=str(backend),
        API_URL=f"http://localhost:{backend}",
        REFLEX_WEB_WORKDIR=str(fresh.run_dir / "web"),
    )
    process = start_launch(env)
    process.frontend, process.backend = frontend, backend  # type: ignore[attr-defined]
    yield process
    stop_launch(process)


def stop_launch(process: subprocess.Popen[str]) -> str:
    """Stop a launch as Ctrl-C would; if it hangs, kill it and every process under it."""
    children = descendants(process.pid)
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        for pid in [process.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the launch did not stop within 60s:\n{output[-3000:]}")
    return output


def argv(pid: int) -> list[bytes]:
    """The process's command line, word by word (a shell's `-c` script is one word)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile
        return []


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,pgid=,ppid="], check=True, capture_output=True, text=True).stdout
    rows = [tuple(map(int, line.split())) for line in out.splitlines()]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, _, ppid in rows if ppid in frontier} - found
        found |= frontier
    return sorted(found)


@pytest.mark.timeout(400)
def test_make_run_serves_the_app_and_ctrl_c_stops_everything_it_started(launch, fresh: Settings) -> None:
    page = f"http://localhost:{launch.frontend}/"
    wait_for(lambda: launch.poll() is not None or (http_ok(page) and http_ok(f"http://localhost:{launch.backend}/ping")),
             300, "the launched app to serve", every_s=0.5)  # fmt: skip
    assert launch.poll() is None, launch.stdout.read()
    with urllib.request.urlopen(page, timeout=5) as response:
        assert "Jobstream" in response.read().decode()
    # A ready API token for scripts on this machine, in a file only its user reads.
    token_file = fresh.run_dir / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    types = urllib.request.Request(f"http://localhost:{launch.backend}/api/job-types")
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(types, timeout=5)
    types.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(types, timeout=5) as response:
        assert response.status == 200
    children = descendants(launch.pid)
    assert len(children) >= 5, "redis, kafka, worker, beat and web run under the launch"
    # The worker users get hands its jobs back on SIGTERM (tests/test_faults.py shows what that gives).
    workers = wait_for(lambda: [pid for pid in descendants(launch.pid) if {b"celery", b"worker"} <= set(argv(pid))],
                       30, "the Celery worker to run")  # fmt: skip
    for pid in workers:
        assert b"REMAP_SIGTERM=SIGQUIT" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")

    launch.send_signal(signal.SIGINT)
    output, _ = launch.communicate(timeout=60)
    assert launch.returncode == 0, output
    assert f"Bearer {token}" in output, "the launch prints the token, as Jupyter prints its own"
    # It says which broker it started, and what that means for the jobs' logs.
    assert re.search(
        r"starting the Tansu broker on 127\.0\.0\.1:\d+: its log is in memory only, a restart loses every job's log",
        output,
    )
    for name in ("redis", "kafka", "worker", "beat", "web"):
        assert re.search(rf"^\d\d:\d\d:\d\d {name} *\| ", output, re.MULTILINE), f"{name}'s lines carry its name"
    wait_for(lambda: not [pid for pid in children if Path(f"/proc/{pid}").exists()], 10, "every process to be gone")
    assert not port_answers(launch.frontend)
    assert not port_answers(urlsplit(fresh.redis_url).port or 0)


def test_a_reused_redis_survives_the_launch(settings: Settings, tmp_path: Path) -> None:
    """Only the broker is embedded here; the session's Redis is reused and must outlive the launch."""
    env = launch_env(load_settings({"RUN_DIR": str(tmp_path)}), REDIS_URL=settings.redis_url,
                     KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")  # fmt: skip
    process = start_launch(env)
    try:
        system_log = tmp_path / "logs" / "system.log"
        started = lambda: system_log.exists() and system_log.read_text().count(" started (pid=") >= 4  # noqa: E731
        wait_for(lambda: process.poll() is not None or started(), 60, "the launch to start")
        assert process.poll() is None, "the launch ended by itself instead of running until stopped"
    finally:
        output = stop_launch(process)
    assert "reusing the redis" in output
    assert redis.Redis.from_url(settings.redis_url).ping()


STOP_WHILE_STARTING = """
import os, signal, sys
from stack.launch import Supervisor

class StoppedWhileStarting(Supervisor):
    def _start(self):
        super()._start()
        os.kill(os.getpid(), signal.SIGTERM)  # handled before any process has reported its pid

manager = StoppedWhileStarting()
for name in ("one", "two", "three"):
    manager.add_process(name, "sleep 120")
manager.loop()
sys.exit(manager.returncode)
"""


def test_a_stop_while_processes_are_still_starting_stops_them_all() -> None:
    """The Ctrl-C in the first moment of `make run`: before the fix, honcho's handler raised
    KeyError 'pid' and the launch hung."""
    process = subprocess.Popen([sys.executable, "-c", STOP_WHILE_STARTING], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        output, _ = process.communicate(timeout=30)
    finally:
        for pid in [process.pid, *descendants(process.pid)]:  # a hung launch and its processes
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert process.returncode == 143, output
    assert output.count("sending SIGTERM") == 3, output
    assert "Traceback" not in output


def test_a_process_that_fails_to_start_ends_the_launch_and_is_named(fresh: Settings) -> None:
    # Something that is not a Kafka broker holds the broker's port: the embedded one cannot bind.
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env = launch_env(fresh, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{port}")
        result = subprocess.run([sys.executable, "-m", "stack.launch"], cwd=PROJECT_ROOT, env=env,
                                capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 1
    assert "kafka stopped; its log is" in result.stderr
    assert str(fresh.run_dir / "logs" / "kafka.log") in result.stderr


def test_the_page_compiles_and_the_backend_answers(web: WebApp) -> None:
    with urllib.request.urlopen(web.frontend, timeout=5) as response:
        assert response.status == 200
        assert "Jobstream" in response.read().decode()
    with urllib.request.urlopen(f"{web.backend}/ping", timeout=5) as response:
        assert response.status == 200
