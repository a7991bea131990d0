"""Child processes in their own process group, their output in a log file: start, await, stop.

The launch, the tests and the benchmarks all start Redis, brokers, workers and the app this way.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

from settings import PROJECT_ROOT, child_env, get_settings
from stack.access import kept_secret

VENV_BIN = Path(sys.executable).parent
PR_SET_PDEATHSIG = 1
# What a Celery worker of Jobstream's runs with, wherever it is started (compose sets the same):
# SIGTERM hands running jobs back to the queue at once (Celery's cold shutdown restores
# unacknowledged messages) instead of waiting for them to end; the next worker resumes them.
WORKER_ENV = {"REMAP_SIGTERM": "SIGQUIT"}


class ProcessError(RuntimeError):
    """A child process exited, or did not get ready, when it should have."""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def app_env() -> dict[str, str]:
    """The environment of the app's processes: this one's, the venv's tools (node, npm, celery,
    reflex, granian) first on PATH, output unbuffered, and a session secret (see stack.access)."""
    env = child_env()
    env["SESSION_SECRET"] = kept_secret(get_settings())
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def asgi_command(app: str, port: int) -> list[str]:
    """granian serving the ASGI `app` ("module:attribute") on a loopback port: one worker, HTTP only."""
    command = [str(VENV_BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    return [*command, "--workers", "1", "--no-ws", app]


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """A GET that answers 200: whether a server a child runs is serving yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def unique_name(role: str, host: str) -> str:
    """A Celery node name no other worker of this run has (each gets a log file of its own)."""
    return f"{role}-{uuid.uuid4().hex[:6]}@{host}"


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM when the parent dies, so nothing is left orphaned."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A command in a new session (so `stop` reaches everything it starts), logging to `log_path`."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=child_env() if env is None else env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509 - only calls prctl
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, check: Callable[[], object], timeout_s: float, what: str) -> None:
        """Poll `check` until true; ProcessError if the process exits first or time runs out."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if self.process.poll() is not None:
                raise ProcessError(f"{self.name} exited with code {self.process.returncode}; log: {self.log_path}")
            if time.monotonic() > deadline:
                raise ProcessError(f"{what} not within {timeout_s:.0f}s; log: {self.log_path}")
            time.sleep(0.05)

    def children(self) -> list[int]:
        """Pids of the process's direct children (a Celery worker's pool, say)."""
        out = subprocess.run(["pgrep", "-P", str(self.pid)], check=False, capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def signal(self, signum: int) -> None:
        """Send a signal to the process itself (not its group)."""
        os.kill(self.pid, signum)

    def kill_group(self) -> None:
        """SIGKILL the process and everything it started, as when its machine dies."""
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout_s: float = 30.0, signum: int | None = None) -> None:
        """`signum` (default SIGTERM) to the process group, SIGKILL if it is still there after timeout_s."""
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM if signum is None else signum)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill_group()


class CeleryWorker(Child):
    """A Celery worker on `app` (Jobstream's tasks by default), its output in log_dir/worker-<name>.log.

    Ready when constructed; with `wait` false, call `wait_ready` before sending it work. SIGTERM hands
    its jobs back.
    """

    def __init__(
        self,
        name: str,
        log_dir: Path,
        concurrency: int,
        env: dict[str, str] | None = None,
        beat: bool = False,
        die_with_parent: bool = False,
        timeout_s: float = 60.0,
        app: str = "tasks.worker.celery_app",
        wait: bool = True,
    ) -> None:
        command = [str(VENV_BIN / "celery"), "-A", app, "worker", "-E", "-n", name]
        command += ["-c", str(concurrency), "--loglevel=INFO", "--without-mingle", "--without-gossip"]
        if beat:  # Celery beat inside the worker: the periodic stalled-job check runs too
            command += ["-B", "-s", str(log_dir / f"beat-{name}")]
        worker_env = {**child_env(), **(env or {}), **WORKER_ENV}
        super().__init__(name, command, log_dir / f"worker-{name}.log", worker_env, die_with_parent)
        self.timeout_s = timeout_s
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until the worker is ready; stop it and raise ProcessError if it is not within its timeout."""
        try:
            self.wait_until(lambda: " ready." in self.log(), self.timeout_s, f"worker {self.name} ready")
        except BaseException:
            self.stop()
            raise
