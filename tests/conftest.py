"""Fixtures that run the real thing: Redis, the Kafka broker, Celery workers, the Reflex app.

The tests use their own Redis database and broker port (settings.ENVIRONMENTS["test"]), started with the
same reuse-or-embed logic as `make run`, so a running `make run` stack is neither touched nor
needed. Override any of them through the environment.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, expect, sync_playwright

from settings import PROJECT_ROOT, Settings, get_settings, load_settings, use_environment
from stack import services
from stack.access import kept_secret
from stack.apache_kafka import port_free
from stack.chromium import CHROMIUM, CHROMIUM_ARGS
from stack.postgres import Cluster, postgres_refusal
from stack.processes import VENV_BIN, CeleryWorker, Child, app_env, free_port, http_ok, unique_name
from tasks import service
from tasks.clients import Clients
from tasks.model import JobState
from tasks.tokens import tokens_path
from tests.apiclient import script_token
from tests.browser import TIMEOUT_S, JobPage

# The tests' own Redis database, broker port, ports and run folder (settings.ENVIRONMENTS), set before
# anything reads the settings and inherited by every process the tests start.
use_environment("test")
# The session secret the tests' app processes sign with (stack.access), known to this process too.
os.environ.setdefault("SESSION_SECRET", kept_secret(get_settings()))
get_settings.cache_clear()

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end in a thread of its own: once the browser tests have run, Playwright
    keeps an event loop running in the test thread, and asyncio.run refuses to start another there."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


def run_module(args: list[str], env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`python -m <args>` from the project's root, `env` over this environment, its output captured."""
    return subprocess.run([sys.executable, "-m", *args], cwd=PROJECT_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout_s, check=False)  # fmt: skip


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


SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test fails the run: whatever a test needs, CI must install or start."""
    if os.environ.get("CI") and SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if os.environ.get("CI") and SKIPPED:
        terminalreporter.write_line(f"CI is set: {len(SKIPPED)} skipped tests fail the run: {SKIPPED[:10]}", red=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session", autouse=True)
def stack(settings: Settings) -> Iterator[list[services.Service]]:
    """Redis and Kafka for the whole session: reused if they answer, embedded otherwise (the broker
    EMBEDDED_KAFKA names: Apache Kafka in the test environment)."""
    services.wipe_embedded_kafka(settings)  # a fresh broker, as Tansu always is
    planned = services.plan(settings)
    running = [services.start(s, settings) for s in planned if s.embedded]
    # The test database starts empty: no Celery messages or snapshots left from an earlier run, nor
    # the API tokens its tests made.
    redis.Redis.from_url(settings.redis_url).flushdb()
    tokens_path(settings).unlink(missing_ok=True)
    yield planned
    for r in running:
        r.stop()


# The history store's PostgreSQL: the one at HISTORY_TEST_POSTGRES_URL (default the machine's), else a
# cluster of the tests' own on this port, started on first use.
POSTGRES_URL = os.environ.get("HISTORY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
OWN_POSTGRES_PORT = 15432


@pytest.fixture(scope="session")
def postgres_url(settings: Settings) -> Iterator[str]:
    """A PostgreSQL server's URL whose user may create databases: reused where one answers, else started."""
    if postgres_refusal(POSTGRES_URL) is None:
        yield POSTGRES_URL
        return
    if "HISTORY_TEST_POSTGRES_URL" in os.environ:
        pytest.fail(f"no PostgreSQL answers at HISTORY_TEST_POSTGRES_URL: {postgres_refusal(POSTGRES_URL)}")
    cluster = Cluster.for_run_dir(settings.run_dir, OWN_POSTGRES_PORT)
    try:
        server = cluster.start(settings.run_dir / "logs" / f"postgres-{OWN_POSTGRES_PORT}.log")
    except services.ServiceError as exc:
        pytest.skip(f"no PostgreSQL answers at {POSTGRES_URL}, and none could be started: {exc}")
    yield cluster.url
    server.stop(signum=signal.SIGINT)  # PostgreSQL's fast shutdown: open connections are closed


@pytest.fixture(autouse=True)
def own_api_token() -> None:
    """Each test's API calls are a script of their own: one test's jobs never count against another's
    limits (MAX_UNFINISHED_JOBS, SUBMITS_PER_MINUTE)."""
    script_token.cache_clear()


# The second broker's port, for tests that run on both (BOTH_BROKERS); an Apache Kafka's controller
# listens on the next port.
SECOND_BROKER_PORT = 19090
BROKERS = ("apache", "tansu")


@pytest.fixture(scope="session")
def second_broker(settings: Settings) -> Iterator[str]:
    """The other embedded broker than the session's (Tansu beside Apache Kafka), started on first use."""
    other = replace(
        settings,
        embedded_kafka=next(kind for kind in BROKERS if kind != settings.embedded_kafka),
        kafka_bootstrap_servers=f"127.0.0.1:{SECOND_BROKER_PORT}",
    )
    services.wipe_embedded_kafka(other)
    planned = services.plan_kafka(other)
    running = services.start(planned, other) if planned.embedded else None
    yield other.kafka_bootstrap_servers
    if running is not None:
        running.stop()


@pytest.fixture
def broker(settings: Settings) -> str:
    """The Kafka broker of the test's clients and workers: the session's (EMBEDDED_KAFKA). Tests of
    behaviour in which Tansu and Apache Kafka differ run on both: they carry BOTH_BROKERS."""
    return settings.embedded_kafka


BOTH_BROKERS = pytest.mark.parametrize("broker", BROKERS)


@pytest.fixture
def kafka_bootstrap(request: pytest.FixtureRequest, settings: Settings, broker: str) -> str:
    """The bootstrap servers of the test's broker."""
    if broker == settings.embedded_kafka:
        return settings.kafka_bootstrap_servers
    return str(request.getfixturevalue("second_broker"))


@pytest.fixture
def log_layout() -> str:
    """The job log layout (JOB_LOG_LAYOUT) of the test's clients and workers. The pipeline and fault
    tests run under both: their modules give this fixture params."""
    return "topic"


# For the pipeline, fault and recovery tests: run the test in each job log layout.
BOTH_LAYOUTS = pytest.mark.parametrize("log_layout", ["topic", "shared"])


@pytest.fixture
def job_settings(settings: Settings, log_layout: str, kafka_bootstrap: str) -> Settings:
    """The session's settings in the test's job log layout, on the test's broker."""
    return replace(settings, job_log_layout=log_layout, kafka_bootstrap_servers=kafka_bootstrap)


@pytest.fixture
def c(job_settings: Settings) -> Clients:
    return Clients(job_settings)


def free_port_pair() -> int:
    """A loopback port whose next one is free too (an Apache Kafka's clients and controller)."""
    return next(port for port in iter(free_port, None) if port_free(port + 1))


class Restartable:
    """A Redis or Kafka broker of the test's own, on a fixed port, that it can stop and start."""

    def __init__(self, service: services.Service, settings: Settings) -> None:
        self.service, self.settings = service, settings
        self.running: services.Running | None = None

    def start(self) -> None:
        self.running = services.start(self.service, self.settings)

    def stop(self) -> None:
        assert self.running is not None
        self.running.stop()
        self.running = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[Restartable, Settings]]:
    """A Redis that keeps nothing on disk, like the machine's: a restart loses every key."""
    port = free_port()
    settings = load_settings({**os.environ, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "RUN_DIR": str(tmp_path)})
    command = [services.redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = Restartable(services.Service("redis", "127.0.0.1", port, command), settings)
    server.start()
    yield server, settings
    if server.running:
        server.stop()


def start_test_worker(name: str, env: dict[str, str], concurrency: int = 2, beat: bool = False) -> Child:
    """A real Celery worker process for a test; it dies with the test session if that dies."""
    log_dir = get_settings().run_dir / "logs"
    return CeleryWorker(unique_name(name, "test"), log_dir, concurrency, env, beat, die_with_parent=True)


@pytest.fixture
def start_worker(log_layout: str, kafka_bootstrap: str) -> Iterator[Callable[..., Child]]:
    """Start workers for one test, in its job log layout, on its broker; all are stopped at its end."""
    started: list[Child] = []

    def start(name: str = "w", concurrency: int = 2, beat: bool = False, **env: str) -> Child:
        own = {"JOB_LOG_LAYOUT": log_layout, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, **env}
        worker = start_test_worker(name, own, concurrency, beat)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def worker(start_worker: Callable[..., Child]) -> Child:
    """A fresh worker for this test alone, so no job of an earlier test can reach it."""
    return start_worker("w")


def wait_finished(c: Clients, job_id: str, timeout_s: float = 60) -> JobState:
    def finished() -> JobState | None:
        state = service.get_job(job_id, c)
        return state if state.status.finished else None

    return wait_for(finished, timeout_s, f"job {job_id} to finish")


class WebApp:
    """`reflex run` in its own process group, on the test ports."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.frontend = f"http://localhost:{settings.frontend_port}"
        self.backend = f"http://localhost:{settings.backend_port}"
        self.log_path = settings.run_dir / "logs" / "web.log"
        # In dev mode `reflex run` restarts its backend (dropping in-memory state and every
        # watcher) when any file under the project changes; point its watch at an empty folder.
        quiet = settings.run_dir / "no-reload"
        quiet.mkdir(parents=True, exist_ok=True)
        self.env = {**app_env(), "REFLEX_HOT_RELOAD_OVERRIDE_PATHS": str(quiet), **env}
        self.child: Child | None = None

    def start(self) -> None:
        self.child = Child("web", [str(VENV_BIN / "reflex"), "run", "--loglevel", "info"], self.log_path,
                           self.env, die_with_parent=True)  # fmt: skip
        self.child.wait_until(self.ready, 240, "the Reflex app serving")

    def ready(self) -> bool:
        return http_ok(self.frontend) and http_ok(f"{self.backend}/ping")

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(20)


# Page tests run on the app with its page state in memory (`make run`'s). Those whose outcome depends on
# where that state lives (reloads, tabs, shared subscriptions, pagers, live updates) run with it in
# Redis (REFLEX_REDIS_URL, compose's) as well: they carry this mark.
BOTH_STATE_MANAGERS = pytest.mark.parametrize("web", ["memory", "redis"], indirect=True)


@pytest.fixture(scope="session")
def web(request: pytest.FixtureRequest, settings: Settings) -> Iterator[WebApp]:
    """The Reflex app with its page state in memory, or in Redis (REFLEX_REDIS_URL) for a test marked
    BOTH_STATE_MANAGERS."""
    env = {}
    if getattr(request, "param", "memory") == "redis":
        base = settings.redis_url.rsplit("/", 1)[0]
        env["REFLEX_REDIS_URL"] = f"{base}/14"
    app = WebApp(settings, env)
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One Chromium for the session: Playwright's sync API allows one running instance per process."""
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        expect.set_options(timeout=TIMEOUT_S * 1000)
        yield chromium
        chromium.close()


DESKTOP = {"width": 1000, "height": 800}


@pytest.fixture
def new_context(browser: Browser, web: WebApp) -> Iterator[Callable[..., BrowserContext]]:
    """Fresh browser contexts (own cookies, own Reflex token) for one test, closed at its end."""
    opened: list[BrowserContext] = []

    def new(**options: Any) -> BrowserContext:
        context = browser.new_context(**{"viewport": DESKTOP, **options})
        context.set_default_timeout(TIMEOUT_S * 1000)
        opened.append(context)
        return context

    yield new
    for context in opened:
        context.close()


@pytest.fixture
def open_page(
    web: WebApp, worker: Child, new_context: Callable[..., BrowserContext], c: Clients
) -> Iterator[Callable[[BrowserContext | None], JobPage]]:
    """Open `/` in a new tab (of a new context unless given one), with a worker running the jobs.

    Jobs left unfinished are cancelled before the test's worker stops.
    """
    pages: list[JobPage] = []

    def open_(context: BrowserContext | None = None) -> JobPage:
        page = JobPage((context or new_context()).new_page(), web.frontend + "/")
        pages.append(page)
        return page.open()

    yield open_
    # Before the worker stops (its process group is signalled, so a running job gets no last word).
    left = {job_id for page in pages for job_id in page.submitted}
    for job_id in left:
        service.cancel_job(job_id, c)
    for job_id in left:
        wait_finished(c, job_id, timeout_s=TIMEOUT_S)


@pytest.fixture
def no_backend_exceptions(web: WebApp) -> Iterator[None]:
    """The test also fails when the app logged an exception while it ran (page tests use it for all)."""
    start = web.log_path.stat().st_size
    yield
    with web.log_path.open("rb") as log:
        log.seek(start)
        new = log.read().decode(errors="replace")
    assert "Backend Exception" not in new, new[-4000:]
