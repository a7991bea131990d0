"""The Reflex app as production runs it (`reflex run --env prod`: page, WebSocket and API on one port).

Started in its own process group on the bench's settings, with its own web and state folders, so a
`make run` or a test run elsewhere is not touched; `stop()` ends the whole group.
"""

from __future__ import annotations

import os
from types import TracebackType
from urllib.parse import urlsplit

import psutil

from bench.stack import BenchError, BenchStack
from stack.processes import VENV_BIN, Child, app_env, http_ok

# Reflex builds the page into this folder (git-ignored; the first build installs ~170 MB of npm packages).
WEB_WORKDIR = ".web-bench"
# The first start runs `npm install`; later ones only bundle the page (~8 s).
START_TIMEOUT_S = 300.0


class ReflexApp:
    """`reflex run --env prod` on BACKEND_PORT; Reflex keeps its state in Redis when `state_redis_url` is set.

    Reflex 0.10.1 serves with one granian worker process without Redis, and with (CPUs x 2 + 1) of them
    with its state in Redis (reflex.utils.processes.get_num_workers); `workers` sets their number
    (granian's GRANIAN_WORKERS, which Reflex reads first); `env` adds settings of the app's own (the
    operator's console's password hash, another history store)."""

    def __init__(
        self,
        stack: BenchStack,
        state_redis_url: str | None = None,
        workers: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.stack = stack
        self.extra_env = env or {}
        self.port = stack.settings.backend_port
        self.url = f"http://localhost:{self.port}"
        self.state_redis_url = state_redis_url
        self.worker_count = workers
        self.process: Child | None = None

    def env(self) -> dict[str, str]:
        settings = self.stack.settings
        env = {
            **app_env(),
            # Reflex 0.10 in prod serves everything on one port and refuses two different ones.
            "FRONTEND_PORT": str(self.port),
            "API_URL": settings.api_url,
            "REFLEX_WEB_WORKDIR": os.environ.get("REFLEX_WEB_WORKDIR", WEB_WORKDIR),
            "REFLEX_STATES_WORKDIR": str(settings.run_dir / "reflex-states"),
        }
        env.pop("REFLEX_REDIS_URL", None)
        env.pop("GRANIAN_WORKERS", None)
        if self.state_redis_url:
            env["REFLEX_REDIS_URL"] = self.state_redis_url
        if self.worker_count is not None:
            env["GRANIAN_WORKERS"] = str(self.worker_count)
        return env | self.extra_env

    def __enter__(self) -> ReflexApp:
        if http_ok(f"{self.url}/ping"):
            raise BenchError(f"something already answers on port {self.port}: set BACKEND_PORT to a free port")
        command = [str(VENV_BIN / "reflex"), "run", "--env", "prod", "--loglevel", "info"]
        name = "reflex-redis-state" if self.state_redis_url else "reflex"
        self.process = Child(name, command, self.stack.log_dir / f"{name}.log", self.env())
        try:
            self.process.wait_until(
                lambda: http_ok(f"{self.url}/ping") and http_ok(self.url), START_TIMEOUT_S, "the Reflex app answering"
            )
        except BaseException:
            self.process.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.process is not None:
            self.process.stop()

    @property
    def redis_port(self) -> int:
        return urlsplit(self.stack.settings.redis_url).port or 6379

    def processes(self) -> list[psutil.Process]:
        """Every process of the app: `reflex run`, granian's supervisor and its workers."""
        assert self.process is not None
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def workers(self) -> list[psutil.Process]:
        """granian's worker processes: the children of `reflex run` (granian's supervisor) on the port."""
        return [
            proc
            for proc in self.processes()[1:]
            if any(c.laddr.port == self.port for c in proc.net_connections(kind="tcp"))
        ]

    def backends(self) -> list[psutil.Process]:
        """The processes that serve the app: each listens on the port and holds its progress hub's Redis
        connection."""
        served = []
        for proc in self.processes():
            conns = proc.net_connections(kind="tcp")
            listens = any(c.status == psutil.CONN_LISTEN and c.laddr.port == self.port for c in conns)
            if listens and any(c.raddr and c.raddr.port == self.redis_port for c in conns):
                served.append(proc)
        if not served:
            raise BenchError(f"no process of the Reflex app serves port {self.port} with Redis open")
        return served

    def backend(self) -> psutil.Process:
        """The (first) process that serves the app."""
        return self.backends()[0]

    def serving(self) -> list[psutil.Process]:
        """Whose CPU the pages cost: the one backend process with the state in memory; with the state in
        Redis, every process of the app (its workers, and the supervisor that hands them connections)."""
        return self.processes() if self.state_redis_url else [self.backend()]

    def rss_kib(self) -> int:
        return int(self.backend().memory_info().rss // 1024)

    def redis_connections(self) -> int:
        """The backend's connections in Redis' CLIENT LIST, matched by their local ports."""
        conns = self.backend().net_connections(kind="tcp")
        ports = {c.laddr.port for c in conns if c.raddr and c.raddr.port == self.redis_port}
        clients: list[dict[str, str]] = self.stack.redis.client_list()  # type: ignore[assignment]
        return sum(int(client["addr"].rsplit(":", 1)[1]) in ports for client in clients)
