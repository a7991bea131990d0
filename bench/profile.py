"""Where the Reflex backend's time goes while it serves the most pages: py-spy samples the backend
process (`py-spy record --format raw`: one line per distinct stack, root first, then its count) and
each sample goes to one bucket (`bucket`).

A sample belongs to the bucket of its innermost frame that a rule of RULES matches; within one frame
the rules are tried in their order. So a JSON encoder under socket.io's emit counts as the emit, the
same encoder under Reflex's delta as the delta, and the app's code counts only for the time it spends
in its own frames (what it calls in Reflex counts as Reflex's).
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from stack.processes import VENV_BIN

RATE_HZ = 200
OTHER = "other"
NATIVE = "native"
# A frame as py-spy writes it: "function (file:line)", file relative to its entry of sys.path.
FRAME_RE = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
# A stack whose innermost frame waits for the event loop's next event: an idle sample py-spy still took.
IDLE_LEAF_RE = re.compile(r"select \(selectors\.py")
# A frame that never decides a sample's bucket: Reflex's read of a var without its proxy, which the app's
# own reads (`JobsState._cards`) and the delta both call; its caller decides.
PASS_THROUGH_RE = re.compile(r"^BaseState\.get_value$")


@dataclass(frozen=True)
class Rule:
    """Frames of a bucket: their file matches `file`, and their function `function` (when given)."""

    bucket: str
    file: re.Pattern[str]
    function: re.Pattern[str] | None = None

    def matches(self, function: str, file: str) -> bool:
        return bool(self.file.search(file)) and (self.function is None or bool(self.function.search(function)))


# The buckets, in the order they are tried on a frame, with what each holds.
BUCKETS = {
    "emit": "socket.io and engine.io: the emit, the packet, the websocket send (Reflex's emit_update and ASGI send)",
    "delta": "Reflex's delta: get_delta, _get_resolved_delta, dict, _clean, istate/delta.py, the JSON of an update",
    "reflex_state": "Reflex's state proxy and manager: enter/exit, locks, get_state, var reads and writes, events",
    "app": "the app's own frames (rxapp/, tasks/, settings.py): _apply, job_view, the hub, the watcher",
    OTHER: "every other Python frame: the event loop, starlette, redis-py, the worker threads",
    NATIVE: "no Python frame on the stack: a thread in native code (granian's I/O, C extensions)",
}
RULES = (
    Rule("emit", re.compile(r"^(socketio|engineio)/")),
    Rule("emit", re.compile(r"^reflex/app\.py$"), re.compile(r"(emit_update|modified_send)$")),
    Rule("emit", re.compile(r"^reflex_base/event/"), re.compile(r"emit_delta$")),
    Rule("delta", re.compile(r"^reflex/istate/delta\.py$")),
    Rule("delta", re.compile(r"^reflex/state\.py$"), re.compile(r"\.(get_delta|_get_resolved_delta|dict|_clean)$")),
    Rule("delta", re.compile(r"^reflex/app\.py$"), re.compile(r"_sio_dumps$")),
    Rule("delta", re.compile(r"^reflex(_base)?/utils/(format|serializers)\.py$")),
    Rule("reflex_state", re.compile(r"^reflex/(state|app)\.py$|^reflex/istate/|^reflex_base/")),
    Rule("app", re.compile(r"^(rxapp|tasks)/|^settings\.py$")),
)


def frame_bucket(frame: str) -> str | None:
    """The bucket of one frame, None when no rule matches it (or it never decides)."""
    match = FRAME_RE.match(frame)
    if match is None or PASS_THROUGH_RE.search(match["function"]):
        return None
    return next((rule.bucket for rule in RULES if rule.matches(match["function"], match["file"])), None)


def bucket(stack: str) -> str | None:
    """The bucket of a collapsed stack ("root (a.py:1);...;leaf (b.py:2)"): its innermost frame's that
    has one, else OTHER; NATIVE for a stack without a frame; None for an idle sample (waiting in select)."""
    frames = [frame for frame in stack.split(";") if frame]
    if not frames:
        return NATIVE
    if IDLE_LEAF_RE.search(frames[-1]):
        return None
    return next((b for b in map(frame_bucket, reversed(frames)) if b is not None), OTHER)


def breakdown(lines: Iterable[str]) -> Counter[str]:
    """Samples per bucket from py-spy's raw output (idle samples left out)."""
    counts: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if count.isdigit() and (name := bucket(stack)) is not None:
            counts[name] += int(count)
    return counts


def summary(counts: Counter[str], ms_per_update: float) -> dict[str, Any]:
    """Each bucket's share of the samples, and its part of the backend's CPU per page update."""
    samples = sum(counts.values())
    buckets = {
        name: {
            "samples": counts[name],
            "share": counts[name] / samples,
            "ms_per_update": counts[name] / samples * ms_per_update,
        }
        for name in BUCKETS
    }
    return {"samples": samples, "backend_ms_per_update": ms_per_update, "buckets": buckets}


class Recording:
    """py-spy recording one process at RATE_HZ from `__enter__` to `__exit__`, without pausing it
    (--nonblocking). It never fails the bench: `error` says why there is no profile."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid = pid
        self.out = out
        self.log = out.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    def __enter__(self) -> Recording:
        command = [str(VENV_BIN / "py-spy"), "record", "-p", str(self.pid), "-r", str(RATE_HZ), "--nonblocking"]
        command += ["--format", "raw", "-o", str(self.out)]
        self.out.unlink(missing_ok=True)
        try:
            with self.log.open("wb") as log:
                self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        except OSError as exc:
            self.error = f"py-spy did not start: {exc}"
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.out.exists() and self.error is None:
            said = self.log.read_text(errors="replace").strip().splitlines()
            self.error = f"py-spy could not record (exit {self.process.returncode}): {' '.join(said[-2:])}"

    def result(self, ms_per_update: float) -> dict[str, Any]:
        """The breakdown at this cost per update, or the reason there is none."""
        if self.error is not None:
            return {"error": self.error}
        with self.out.open() as lines:
            counts = breakdown(lines)
        if not counts:
            return {"error": "py-spy recorded no busy sample"}
        return {"rate_hz": RATE_HZ, **summary(counts, ms_per_update)}
