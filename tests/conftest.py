"""Fixtures that run the real thing: Redis, the Kafka broker, Celery workers, the Reflex app.

The tests use their own Redis database and broker port (the defaults below), started with the
same reuse-or-embed logic as `make run`, so a running `make run` stack is neither touched nor
needed. Override any of them through the environment.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TEST_ENV = {
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
    "FRONTEND_PORT": "3100",
    "BACKEND_PORT": "8100",
    "STEP_DELAY_MS": "2",
    "RUN_DIR": ".run/test",
    "REFLEX_USE_NPM": "1",
    "REFLEX_CHECK_LATEST_VERSION": "0",
}
for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)

from settings import PROJECT_ROOT, Settings, get_settings  # noqa: E402
from stack import services  # noqa: E402
from tasks.clients import Clients  # noqa: E402
from tasks.model import JobState  # noqa: E402

VENV_BIN = Path(sys.executable).parent
_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_pytest() -> None:
    """Run in a child before exec: it gets SIGTERM if the test process dies, so none is orphaned."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_for(check: Callable[[], object], timeout_s: float = 30.0, what: str = "condition", every_s: float = 0.02):
    """Poll `check` until it returns something truthy, and return that; fail the test after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session", autouse=True)
def stack(settings: Settings) -> Iterator[list[services.Service]]:
    """Redis and Kafka for the whole session: reused if they answer, embedded otherwise."""
    planned = services.plan(settings)
    running = [services.start(s, settings) for s in planned if s.embedded]
    import redis

    # The test database starts empty: no Celery messages or snapshots left from an earlier run.
    redis.Redis.from_url(settings.redis_url).flushdb()
    yield planned
    for r in running:
        r.stop()


@pytest.fixture
def c(settings: Settings) -> Clients:
    return Clients(settings)


class Worker:
    """A real Celery worker process, started and stopped (or killed) by the test."""

    def __init__(self, name: str, env: dict[str, str], concurrency: int = 2, beat: bool = False) -> None:
        self.name = f"{name}-{uuid.uuid4().hex[:6]}@test"
        log_dir = get_settings().run_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"worker-{self.name}.log"
        command = [str(VENV_BIN / "celery"), "-A", "tasks.celery_app", "worker", "-E", "-n", self.name]
        command += ["-c", str(concurrency), "--loglevel=INFO", "--without-mingle", "--without-gossip"]
        if beat:  # Celery beat inside the worker: the periodic stalled-job check runs too
            command += ["-B", "-s", str(log_dir / f"beat-{self.name}")]
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env={**os.environ, "REMAP_SIGTERM": "SIGQUIT", **env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_pytest,  # noqa: PLW1509 - it only calls prctl
            )
        wait_for(self.ready, 60, f"worker {self.name} (log: {self.log_path})", every_s=0.1)

    def ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"worker exited with {self.process.returncode}; log: {self.log_path}")
        return " ready." in self.log_path.read_text(errors="replace")

    def pool_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], check=False, capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def kill_all(self) -> None:
        """SIGKILL the worker and its pool at once, as when its machine or container dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout_s: float = 30) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., Worker]]:
    """Start workers for one test; all are stopped at its end."""
    started: list[Worker] = []

    def start(name: str = "w", concurrency: int = 2, beat: bool = False, **env: str) -> Worker:
        worker = Worker(name, env, concurrency, beat)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def worker(start_worker: Callable[..., Worker]) -> Worker:
    """A fresh worker for this test alone, so no job of an earlier test can reach it."""
    return start_worker("w")


def wait_finished(c: Clients, job_id: str, timeout_s: float = 60) -> JobState:
    from tasks import service

    def finished() -> JobState | None:
        state = service.get_job(job_id, c)
        return state if state.status.finished else None

    return wait_for(finished, timeout_s, f"job {job_id} to finish")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class WebApp:
    """`reflex run` in its own process group, on the test ports."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.frontend = f"http://localhost:{settings.frontend_port}"
        self.backend = f"http://localhost:{settings.backend_port}"
        log_dir = settings.run_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "web.log"
        self.env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **env}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "reflex"), "run", "--loglevel", "info"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_pytest,  # noqa: PLW1509 - it only calls prctl
            )
        wait_for(self.ready, 240, f"the Reflex app (log: {self.log_path})", every_s=0.2)

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            pytest.fail(f"reflex exited with {self.process.returncode}; log: {self.log_path}")
        return http_ok(self.frontend) and http_ok(f"{self.backend}/ping")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="session", params=["memory", "redis"])
def web(request: pytest.FixtureRequest, settings: Settings) -> Iterator[WebApp]:
    """The Reflex app with each state manager: in memory, and in Redis (REFLEX_REDIS_URL)."""
    env = {}
    if request.param == "redis":
        base = settings.redis_url.rsplit("/", 1)[0]
        env["REFLEX_REDIS_URL"] = f"{base}/14"
    app = WebApp(settings, env)
    app.start()
    yield app
    app.stop()
