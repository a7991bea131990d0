"""`make run`: Redis, Kafka, a Celery worker, Celery beat, the history consumer and the Reflex app under
one supervisor.

honcho runs every process with its output prefixed by its name and also written to
RUN_DIR/logs/<name>.log. Ctrl-C or SIGTERM stops what this launch started; reused services are
left alone. If one process ends, the launch ends and names it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from honcho.manager import Manager
from honcho.printer import Printer

from settings import PROJECT_ROOT, Settings, use_environment
from stack.access import local_token
from stack.processes import WORKER_ENV, app_env
from stack.services import ServiceError, plan

STOPPED_BY_LAUNCH = {-15, -9, 143, 137, 130}
OPS_CONSOLE_OFF = (
    "jobstream: the operator's console (/ops) is off; to turn it on: "
    'export OPS_PASSWORD_HASH="$(.venv/bin/python -m tasks.ops hash)" and run again '
    "(then http://localhost:{frontend_port}/ops)"
)


class LoggingPrinter(Printer):
    """honcho's printer that also appends each process's lines to its own log file."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__(sys.stdout)
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)

    def write(self, message: Any) -> None:
        super().write(message)
        data = message.data.decode("utf-8", "replace") if isinstance(message.data, bytes) else message.data
        with (self.log_dir / f"{message.name}.log").open("a", encoding="utf-8") as log_file:
            log_file.write(data)


class Supervisor(Manager):
    """honcho's Manager that can be stopped while its processes are still starting.

    honcho signals each process by the pid it reported. A Ctrl-C or SIGTERM before every one had
    reported made its handler fail (KeyError 'pid') and left the launch hanging. Here such a stop
    is held until all have started, then done as honcho does when one of its processes ends.
    """

    _stop_held = False

    def terminate(self) -> None:
        if self._all_started():
            super().terminate()
        else:
            self._stop_held = True

    def _any_stopped(self) -> bool:
        # honcho's loop terminates every process once all have started and any has stopped.
        return self._stop_held or super()._any_stopped()


def app_commands(settings: Settings) -> dict[str, str]:
    """The app's own processes; each waits for Redis and Kafka before it starts."""
    python = shlex.quote(sys.executable)
    wait = f"{python} -m stack.services && exec"
    beat_schedule = shlex.quote(str(settings.run_dir / "celerybeat-schedule"))
    worker_env = shlex.join(f"{name}={value}" for name, value in WORKER_ENV.items())
    return {
        "worker": f"{wait} env {worker_env} {python} -m celery -A tasks.worker.celery_app worker -E --loglevel=INFO",
        "beat": f"{wait} {python} -m celery -A tasks.worker.celery_app beat --loglevel=INFO -s {beat_schedule}",
        "history": f"{wait} {python} -m tasks.history run",
        "web": f"{wait} {python} -m reflex run --loglevel info",
    }


def main() -> int:
    settings = use_environment("run")  # its values reach the processes it starts
    try:
        services = plan(settings)
    except ServiceError as exc:
        print(f"jobstream: {exc}", file=sys.stderr)
        return 1
    log_dir = settings.run_dir / "logs"
    manager = Supervisor(printer=LoggingPrinter(log_dir))
    for service in services:
        if service.command is None:
            print(f"jobstream: reusing the {service.name} that answers at {service.host}:{service.port}")
        else:
            print(f"jobstream: starting {service.what} on {service.host}:{service.port}: {service.note}")
            manager.add_process(service.name, shlex.join(service.command), cwd=str(PROJECT_ROOT))
    env = app_env()
    for name, command in app_commands(settings).items():
        manager.add_process(name, command, cwd=str(PROJECT_ROOT), env=env)
    token, token_path = local_token(settings)
    print(f"jobstream: the page will be at http://localhost:{settings.frontend_port} ; logs in {log_dir}")
    print(f"jobstream: API token for scripts on this machine (also in {token_path}):\n    {token}")
    print(f"    curl -H 'Authorization: Bearer {token}' {settings.api_url}/api/job-types")
    if not settings.ops_console:
        print(OPS_CONSOLE_OFF.format(frontend_port=settings.frontend_port))
    manager.loop()
    # honcho waits for each process it started, not for what that process started in its group.
    for proc in manager._processes.values():
        with contextlib.suppress(ProcessLookupError, KeyError, TypeError):
            os.killpg(proc["pid"], signal.SIGKILL)
    failed = [
        name
        for name, proc in manager._processes.items()  # honcho keeps each process's exit code here
        if proc.get("returncode") not in STOPPED_BY_LAUNCH | {None}
    ]
    if failed and manager.returncode not in (130, 143):
        for name in failed:
            print(f"jobstream: {name} stopped; its log is {log_dir / (name + '.log')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
