"""A PostgreSQL server for the tests: the one that answers at a URL, else a cluster of the project's own.

The history store's tests run against SQLite and PostgreSQL. A machine may have a server running (then it
is reused), only Debian's binaries (`make system-deps` installs them where missing), or neither. The own
cluster is made once with `initdb` (trust auth on loopback, a socket in its data folder) and started on
the port it was asked for. PostgreSQL refuses to run as root, so as root the cluster belongs to the
`postgres` user that Debian's package makes, in that user's home: the project's folder may be closed to it.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from stack.processes import Child, ProcessError
from stack.services import ServiceError

POSTGRES_BINARIES = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"


def postgres_refusal(url: str, timeout_s: int = 3) -> str | None:
    """Why no PostgreSQL answers at `url` (its first line), or None when one does."""
    try:
        psycopg.connect(url, connect_timeout=timeout_s, autocommit=True).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _major(initdb: Path) -> int:
    version = initdb.parts[-3]  # /usr/lib/postgresql/<version>/bin/initdb
    return int(version) if version.isdigit() else 0


def server_bindir() -> Path:
    """The newest PostgreSQL's bin folder (Debian's layout, else `initdb` on PATH)."""
    found = sorted(POSTGRES_BINARIES.glob("*/bin/initdb"), key=_major)
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise ServiceError("no PostgreSQL server is installed: apt-get install -y postgresql (or set its URL)")


@dataclass(frozen=True)
class Cluster:
    """A PostgreSQL cluster of the project's own on 127.0.0.1:`port`, its data in `data_dir`."""

    port: int
    data_dir: Path
    user: str | None  # the user the server runs as, when this process is root

    @classmethod
    def for_run_dir(cls, run_dir: Path, port: int) -> Cluster:
        if os.geteuid() != 0:
            return cls(port, run_dir / f"postgres-{port}", None)
        try:
            home = Path(pwd.getpwnam(SERVER_USER).pw_dir)
        except KeyError:
            raise ServiceError(
                f"as root, PostgreSQL needs its '{SERVER_USER}' user: apt-get install -y postgresql"
            ) from None
        # One cluster per checkout and port, kept between runs.
        checkout = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:10]
        return cls(port, home / "jobstream" / f"{checkout}-{port}", SERVER_USER)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_server_user(self, command: list[str]) -> list[str]:
        if self.user is None:
            return command
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--", *command]

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """`initdb` the data folder (once): superuser `postgres`, trust auth, UTF-8."""
        bindir = server_bindir()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.data_dir.parent, self.data_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        command = [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        command = self._as_server_user([*command, "--no-instructions"])
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"initdb of {self.data_dir} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def start(self, log_path: Path, timeout_s: float = 60.0) -> Child:
        """Start the server (after `init` where the folder is new) and wait until it answers."""
        if not self.initialized():
            self.init()
        server = str(server_bindir() / "postgres")
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data_dir}"]
        options += ["-c", "fsync=off", "-c", "max_connections=200"]  # a test server: speed over durability
        command = self._as_server_user([server, "-D", str(self.data_dir), "-p", str(self.port), *options])
        child = Child(f"postgres-{self.port}", command, log_path)
        try:
            answers = lambda: postgres_refusal(self.url, 1) is None  # noqa: E731
            child.wait_until(answers, timeout_s, f"PostgreSQL on port {self.port}")
        except ProcessError as exc:
            child.stop()
            raise ServiceError(f"{exc} ({child.log()[-400:].strip()})") from exc
        return child
