"""All of Jobstream's configuration: environment variables with defaults, validated once.

Each process's entry point (rxconfig, the Celery app, the launch, the tests, the bench) reads them
once with `get_settings()` (or `use_environment`), and the process's `tasks.clients.Clients` carries
them to the rest; nothing else reads `os.environ`, and nothing reads settings at import.
`python -m settings` prints the README's tables of the settings and of the environments.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tasks.ops.passwords import PasswordHashError, parse_hash

PROJECT_ROOT = Path(__file__).resolve().parent


class SettingsError(ValueError):
    """A setting has a value Jobstream cannot use."""


@dataclass(frozen=True)
class Setting:
    """How one environment variable becomes one field: its default and its meaning."""

    default: str
    meaning: str


# The README's table is generated from here (`python -m settings`), so the docs cannot drift from the code.
SETTINGS: dict[str, Setting] = {
    "REDIS_URL": Setting("redis://127.0.0.1:6379/0", "Redis for progress, snapshots and Celery's broker"),
    "KAFKA_BOOTSTRAP_SERVERS": Setting("127.0.0.1:9092", "Kafka bootstrap servers (host:port, comma separated)"),
    "EMBEDDED_KAFKA": Setting(
        "tansu",
        "The broker `make run` and the tests start when none answers at KAFKA_BOOTSTRAP_SERVERS: tansu "
        "(quick, its log in memory only) or apache (Apache Kafka through Maven, its log on disk in RUN_DIR)",
    ),
    "KAFKA_TOPIC_PREFIX": Setting("job-", "Prefix of each job's topic; the topic is <prefix><job_id>"),
    "KAFKA_REPLICATION_FACTOR": Setting("1", "Replication factor of job topics"),
    "JOB_LOG_LAYOUT": Setting(
        "topic",
        "Where job logs go: topic (a topic per job, <prefix><job_id>) or shared (every job in JOB_LOG_TOPIC, "
        "keyed by job id, kept by Kafka's time retention)",
    ),
    "JOB_LOG_TOPIC": Setting("jobs", "The one topic of the shared layout"),
    "JOB_LOG_PARTITIONS": Setting(
        "12", "Partitions of JOB_LOG_TOPIC when Jobstream creates it (a job's partition follows from its id: keep it)"
    ),
    "REFLEX_REDIS_URL": Setting(
        "", "Redis for Reflex's page state, so the backend can run several workers (empty: in memory)"
    ),
    "FRONTEND_PORT": Setting("3000", "Port of the web page"),
    "BACKEND_PORT": Setting("8000", "Port of the Reflex backend: WebSocket and HTTP API"),
    "API_URL": Setting(
        "", "Public URL of the backend as the browser sees it (default http://localhost:<BACKEND_PORT>)"
    ),
    "ALLOWED_ORIGINS": Setting(
        "",
        "Origins (scheme://host:port, comma separated) whose pages may call the API and open the socket "
        "(default the page's and API_URL's, on localhost and 127.0.0.1)",
    ),
    "ALLOWED_HOSTS": Setting(
        "", "Host names the backend answers to, comma separated (default those of ALLOWED_ORIGINS); others get 400"
    ),
    "API_DOCS": Setting("off", "Serve the API's interactive docs at /docs (on or off; they load scripts from a CDN)"),
    "SESSION_SECRET": Setting(
        "",
        "Key (at least 32 characters) that signs the browsers' session cookies; `make run` makes one and "
        "keeps it in <RUN_DIR>/session-secret, compose requires it",
    ),
    "API_ALLOW_ANONYMOUS": Setting(
        "off",
        "Let API calls without a token in (on or off): they all share one owner, its jobs and its limits",
    ),
    "OPS_PASSWORD_HASH": Setting(
        "",
        "Hash of the operator's password (`python -m tasks.ops hash` prints one); empty: no operator's console "
        "(every /api/ops route answers 404)",
    ),
    "OPS_SESSION_HOURS": Setting("12", "How long an operator's login lasts (its cookie and its session in Redis)"),
    "OPS_LOGINS_PER_MINUTE": Setting(
        "5", "Operator logins one client address may try per minute (429 with Retry-After beyond)"
    ),
    "MAX_N": Setting("10000000", "Largest number of steps of a count job"),
    "STEP_DELAY_MS": Setting("5", "Work per step of the demo job, in milliseconds (0: none)"),
    "PROGRESS_INTERVAL_MS": Setting("50", "At most one progress message per job per this many milliseconds"),
    "JOB_RETENTION_HOURS": Setting("168", "Finished jobs' topics and snapshots are deleted after this many hours"),
    "BROKER_WAIT_S": Setting("30", "How long a job waits for an unreachable Kafka before it fails"),
    "MAX_UNFINISHED_JOBS": Setting("20", "Most unfinished jobs one owner (a browser, an API token) may hold"),
    "SUBMITS_PER_MINUTE": Setting(
        "60", "Submits one owner may make per minute, in bursts of up to SUBMIT_BURST (429 beyond)"
    ),
    "SUBMIT_BURST": Setting("20", "Submits one owner may make at once before SUBMITS_PER_MINUTE paces them"),
    "EVENTS_PER_SECOND": Setting(
        "30", "Events one page may send per second, in bursts of twice as many; the rest are dropped"
    ),
    "MAX_SOCKETS_PER_ADDRESS": Setting("50", "Open page sockets one client address may hold per backend process"),
    "MAX_QUEUED_JOBS": Setting("10000", "Most jobs waiting for a worker; a submit beyond it is refused (503)"),
    "MAX_BODY_BYTES": Setting("4096", "Largest HTTP API request body, and largest params of a job"),
    "RESULT_MAX_BYTES": Setting(
        "65536", "Largest result (JSON) a job may return, at most 900000 (a Kafka record); a larger one fails the job"
    ),
    "LOG_MAX_LINES": Setting("10000", "Most log lines (ctx.log, logging, print) a job run keeps; the rest are counted"),
    "WORKER_CONCURRENCY": Setting("2", "Celery worker processes"),
    "HISTORY_DATABASE_URL": Setting(
        "",
        "SQLAlchemy URL of the job history store (default: SQLite in <RUN_DIR>/history.db; compose: PostgreSQL)",
    ),
    "HISTORY_CONSUMER_GROUP": Setting(
        "jobstream-history", "Kafka consumer group of the history consumers (one per history store)"
    ),
    "RUN_DIR": Setting(".run", "Folder (git-ignored) for embedded services' data and the launch's logs"),
    "JOB_MODULES": Setting(
        "", "Your own job types: Python modules to import beside tasks/catalog (dotted paths, comma separated)"
    ),
}


@dataclass(frozen=True)
class Settings:
    """Validated configuration; build it with `load_settings`."""

    redis_url: str
    kafka_bootstrap_servers: str
    embedded_kafka: str
    kafka_topic_prefix: str
    kafka_replication_factor: int
    job_log_layout: str
    job_log_topic: str
    job_log_partitions: int
    reflex_redis_url: str
    frontend_port: int
    backend_port: int
    api_url: str
    allowed_origins: tuple[str, ...]
    allowed_hosts: tuple[str, ...]
    api_docs: bool
    session_secret: str
    api_allow_anonymous: bool
    ops_password_hash: str
    ops_session_hours: float
    ops_logins_per_minute: int
    max_n: int
    step_delay_ms: float
    progress_interval_ms: float
    job_retention_hours: float
    broker_wait_s: float
    max_unfinished_jobs: int
    submits_per_minute: int
    submit_burst: int
    events_per_second: int
    max_sockets_per_address: int
    max_queued_jobs: int
    max_body_bytes: int
    result_max_bytes: int
    log_max_lines: int
    worker_concurrency: int
    history_database_url: str
    history_consumer_group: str
    run_dir: Path
    job_modules: tuple[str, ...]

    @property
    def progress_interval_s(self) -> float:
        return self.progress_interval_ms / 1000

    @property
    def shared_log(self) -> bool:
        """Whether every job's log is in JOB_LOG_TOPIC (else a topic per job)."""
        return self.job_log_layout == "shared"

    @property
    def retention_s(self) -> int:
        return int(self.job_retention_hours * 3600)

    @property
    def ops_console(self) -> bool:
        """Whether the operator's console is on: an operator password is set, and a secret signs its cookies."""
        return bool(self.ops_password_hash and self.session_secret)


def _int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _switch(name: str, raw: str) -> bool:
    value = raw.lower()
    if value not in ("on", "off"):
        raise SettingsError(f"{name} must be on or off, got {raw!r}")
    return value == "on"


def _float(name: str, raw: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _redis_url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise SettingsError(f"{name} must look like redis://host:port/db, got {raw!r}")
    return raw


def _bootstrap(name: str, raw: str) -> str:
    for server in raw.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(f"{name} must be host:port[,host:port...], got {raw!r}")
    return raw


def _text(name: str, raw: str) -> str:
    return raw


ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?|https?://\[[0-9a-fA-F:]+\](:\d{1,5})?")
HOST_RE = re.compile(r"\*?[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]")


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    for origin in origins:
        if not ORIGIN_RE.fullmatch(origin):
            raise SettingsError(f"{name} must be origins such as https://jobs.example.com, got {origin!r}")
    return origins


def _hosts(name: str, raw: str) -> tuple[str, ...]:
    hosts = tuple(part.strip() for part in raw.split(",") if part.strip())
    for host in hosts:
        if not HOST_RE.fullmatch(host):
            raise SettingsError(f"{name} must be host names such as jobs.example.com, got {host!r}")
    return hosts


SECRET_MIN_CHARS = 32


def _secret(name: str, raw: str) -> str:
    if raw and len(raw) < SECRET_MIN_CHARS:
        raise SettingsError(f"{name} must be at least {SECRET_MIN_CHARS} characters (or empty), got {len(raw)}")
    return raw


def _password_hash(name: str, raw: str) -> str:
    if not raw:
        return raw
    try:
        parse_hash(raw)
    except PasswordHashError as exc:
        # Not echoed: it is a secret's hash.
        raise SettingsError(f"{name} is not a password hash: {exc}; make one with `python -m tasks.ops hash`") from None
    return raw


DATABASE_URL_RE = re.compile(r"[a-z][a-z0-9]*(\+[a-z0-9_]+)?://.*")


def _database_url(name: str, raw: str) -> str:
    if not DATABASE_URL_RE.fullmatch(raw):
        # Not echoed: the URL may hold a password.
        raise SettingsError(f"{name} must be a database URL such as postgresql://user@host/db")
    return raw


def origin_host(origin: str) -> str:
    """The host name of an origin: 'jobs.example.com' for https://jobs.example.com:8443."""
    return urlsplit(origin).hostname or ""


def _module_paths(name: str, raw: str) -> tuple[str, ...]:
    paths = tuple(part.strip() for part in raw.split(",") if part.strip())
    for path in paths:
        if not all(part.isidentifier() for part in path.split(".")):
            raise SettingsError(f"{name} must be dotted module paths such as myteam.jobs, got {path!r}")
    return paths


def _topic_prefix(name: str, raw: str) -> str:
    # Kafka topic names allow [a-zA-Z0-9._-]; a job id adds 36 characters to the prefix.
    if not raw or len(raw) > 200 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in raw):
        raise SettingsError(f"{name} may hold only letters, digits, '.', '_' and '-', got {raw!r}")
    return raw


PORT = (1, 65535)
PARSERS: dict[str, Callable[[str, str], Any]] = {
    "REDIS_URL": _redis_url,
    "KAFKA_BOOTSTRAP_SERVERS": _bootstrap,
    "EMBEDDED_KAFKA": lambda n, r: _choice(n, r, ("tansu", "apache")),
    "KAFKA_TOPIC_PREFIX": _topic_prefix,
    "KAFKA_REPLICATION_FACTOR": lambda n, r: _int(n, r, 1, 32),
    "JOB_LOG_LAYOUT": lambda n, r: _choice(n, r, ("topic", "shared")),
    "JOB_LOG_TOPIC": _topic_prefix,
    "JOB_LOG_PARTITIONS": lambda n, r: _int(n, r, 1, 10_000),
    "REFLEX_REDIS_URL": lambda n, r: _redis_url(n, r) if r else r,
    "FRONTEND_PORT": lambda n, r: _int(n, r, *PORT),
    "BACKEND_PORT": lambda n, r: _int(n, r, *PORT),
    "API_URL": _text,
    "ALLOWED_ORIGINS": _origins,
    "ALLOWED_HOSTS": _hosts,
    "API_DOCS": _switch,
    "SESSION_SECRET": _secret,
    "API_ALLOW_ANONYMOUS": _switch,
    "OPS_PASSWORD_HASH": _password_hash,
    "OPS_SESSION_HOURS": lambda n, r: _float(n, r, 0.01, 24 * 30),
    "OPS_LOGINS_PER_MINUTE": lambda n, r: _int(n, r, 1, 1000),
    "MAX_N": lambda n, r: _int(n, r, 1, 10**12),
    "STEP_DELAY_MS": lambda n, r: _float(n, r, 0, 3_600_000),
    "PROGRESS_INTERVAL_MS": lambda n, r: _float(n, r, 1, 60_000),
    "JOB_RETENTION_HOURS": lambda n, r: _float(n, r, 0, 24 * 365 * 10),
    "BROKER_WAIT_S": lambda n, r: _float(n, r, 0, 3600),
    "MAX_UNFINISHED_JOBS": lambda n, r: _int(n, r, 1, 10**6),
    "SUBMITS_PER_MINUTE": lambda n, r: _int(n, r, 1, 10**6),
    "SUBMIT_BURST": lambda n, r: _int(n, r, 1, 10**4),
    "EVENTS_PER_SECOND": lambda n, r: _int(n, r, 1, 10**4),
    "MAX_SOCKETS_PER_ADDRESS": lambda n, r: _int(n, r, 1, 10**5),
    "MAX_QUEUED_JOBS": lambda n, r: _int(n, r, 1, 10**7),
    "MAX_BODY_BYTES": lambda n, r: _int(n, r, 64, 10**7),
    # A final record holds the result: within Kafka's default largest record (1 MB).
    "RESULT_MAX_BYTES": lambda n, r: _int(n, r, 64, 900_000),
    "LOG_MAX_LINES": lambda n, r: _int(n, r, 0, 10**7),
    "WORKER_CONCURRENCY": lambda n, r: _int(n, r, 1, 256),
    "HISTORY_DATABASE_URL": lambda n, r: _database_url(n, r) if r else r,
    "HISTORY_CONSUMER_GROUP": _topic_prefix,
    "RUN_DIR": lambda n, r: PROJECT_ROOT / r,
    "JOB_MODULES": _module_paths,
}


# Settings renamed since a release: the old name still works when the new one is not set.
RENAMED = {"MAX_UNFINISHED_JOBS": "MAX_JOBS_PER_BROWSER"}


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build validated settings from an environment mapping; raise SettingsError naming the bad one."""
    values = {
        name.lower(): PARSERS[name](name, environ.get(name, environ.get(RENAMED.get(name, ""), spec.default)).strip())
        for name, spec in SETTINGS.items()
    }
    if not values["api_url"]:
        values["api_url"] = f"http://localhost:{values['backend_port']}"
    if not values["allowed_origins"]:
        api_origin = "{0.scheme}://{0.netloc}".format(urlsplit(values["api_url"]))
        values["allowed_origins"] = tuple(
            dict.fromkeys(
                [f"http://{host}:{port}" for port in (values["frontend_port"], values["backend_port"])
                 for host in ("localhost", "127.0.0.1")] + [api_origin]
            )
        )  # fmt: skip
    if not values["history_database_url"]:
        values["history_database_url"] = f"sqlite:///{values['run_dir'] / 'history.db'}"
    if not values["allowed_hosts"]:
        values["allowed_hosts"] = tuple(dict.fromkeys(origin_host(o) for o in values["allowed_origins"]))
    assert {f.name for f in fields(Settings)} == set(values)
    return Settings(**values)


# Each way of running Jobstream keeps to its own Redis database, broker port, run folder and web
# ports, so a test or benchmark run never touches a running `make run`, nor one another. Only what
# differs from the defaults is listed; a value set in the environment always wins. The README shows it
# (`python -m settings`).
ENVIRONMENTS: dict[str, dict[str, str]] = {
    "run": {"API_DOCS": "on"},
    "test": {
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
        # The production broker; tests of behaviour that differs on Tansu run there as well.
        "EMBEDDED_KAFKA": "apache",
        "FRONTEND_PORT": "3100",
        "BACKEND_PORT": "8100",
        "STEP_DELAY_MS": "2",
        "RUN_DIR": ".run/test",
        "JOB_MODULES": "tests.catalog",
        "API_DOCS": "on",
    },
    "bench": {
        "REDIS_URL": "redis://127.0.0.1:6379/13",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19095",
        "BACKEND_PORT": "8600",
        "STEP_DELAY_MS": "0",
        "RUN_DIR": ".run/bench",
        "JOB_MODULES": "bench.jobs",
        "LOG_MAX_LINES": "10000000",
        # Its hundreds of scripted pages all come from this machine.
        "MAX_SOCKETS_PER_ADDRESS": "100000",
    },
    "load": {
        # One script submits every job: its owner's limits are the load's, not a person's.
        "MAX_UNFINISHED_JOBS": "100000",
        "SUBMITS_PER_MINUTE": "1000000",
        "SUBMIT_BURST": "10000",
        "REDIS_URL": "redis://127.0.0.1:6379/9",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19097",
        "RUN_DIR": ".run/load",
    },
}


def use_environment(name: str) -> Settings:
    """For an entry point (the tests, the bench, the load run), before anything reads settings: the
    named environment's values where the environment has none, kept for the processes it starts."""
    for key, value in ENVIRONMENTS[name].items():
        os.environ.setdefault(key, value)
    get_settings.cache_clear()
    return get_settings()


def child_env() -> dict[str, str]:
    """The environment for processes Jobstream starts: this one's, passed on unchanged."""
    return dict(os.environ)


def reflex_environment(settings: Settings) -> dict[str, str]:
    """Reflex options that Reflex reads only from the environment, as Jobstream runs it.

    npm installs the frontend's packages: Reflex's default, bun, comes from an install script that
    cannot always be fetched. No check for a newer Reflex at start.

    With page state in Redis, every live update would otherwise take the page's lock in Redis, read
    its state and write it back. Reflex's opportunistic lock keeps a page's state in the process that
    updates it until the hold time passes or another process asks for it (bench:
    `e2e_latency_redis_state_ms`). The hold time stays under Reflex's 1 s warning for a held lock.
    """
    options = {"REFLEX_USE_NPM": "1", "REFLEX_CHECK_LATEST_VERSION": "0"}
    if settings.reflex_redis_url:
        options |= {"REFLEX_OPLOCK_ENABLED": "true", "REFLEX_OPLOCK_HOLD_TIME": "500ms"}
    return options


def apply_reflex_environment(settings: Settings) -> None:
    """Put `reflex_environment` into this process's environment, except what the user set."""
    for name, value in reflex_environment(settings).items():
        os.environ.setdefault(name, value)


@cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings(os.environ)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _code(value: str) -> str:
    return f"`{value}`" if value else ""


def settings_table() -> str:
    """The README's table of settings as markdown: each one's name, default and meaning."""
    # A "|" would end the cell, a "<" open an HTML tag: both are escaped in the prose.
    rows = [
        [_code(name), _code(spec.default), spec.meaning.replace("|", "\\|").replace("<", "\\<")]
        for name, spec in SETTINGS.items()
    ]
    return _markdown_table(["Name", "Default", "Meaning"], rows)


def environments_table() -> str:
    """The README's table of environments as markdown: each setting one of them sets, its default, and
    its value in each environment (blank where that one keeps the default)."""
    names = [name for name in SETTINGS if any(name in values for values in ENVIRONMENTS.values())]
    rows = [
        [_code(name), _code(SETTINGS[name].default), *(_code(values.get(name, "")) for values in ENVIRONMENTS.values())]
        for name in names
    ]
    return _markdown_table(["Setting", "Default", *ENVIRONMENTS], rows)


if __name__ == "__main__":
    print(settings_table(), environments_table(), sep="\n\n")
