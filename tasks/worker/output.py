"""What a job prints and logs becomes lines of its log: `print` (standard output and error) and
the records of `logging`, while its function runs.

A line redrawn with carriage returns is a terminal's progress display (tqdm draws its bars so),
not a log line: it is left out. So are blank lines.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.worker.context import LINE_MAX_CHARS, RunContext

# Loggers of the machinery that runs the job, not of the job: their records stay out of its log.
OWN_LOGGERS = ("tasks.worker", "tasks.progress", "tasks.joblog", "tasks.service", "tasks.clients",
               "celery", "kombu", "amqp", "billiard", "redis")  # fmt: skip


def level_name(levelno: int) -> str:
    """A `logging` level as one of tasks.model.LEVELS (a custom level as the one below it)."""
    for at_least, name in ((logging.CRITICAL, "critical"), (logging.ERROR, "error"), (logging.WARNING, "warning"),
                           (logging.INFO, "info")):  # fmt: skip
        if levelno >= at_least:
            return name
    return "debug"


class LineWriter(io.TextIOBase):
    """A text stream whose whole lines become log lines of the job, at `level`."""

    def __init__(self, ctx: RunContext, level: str) -> None:
        super().__init__()
        self.ctx = ctx
        self.level = level
        self._partial = ""
        self._redrawn = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if "\n" not in text and "\r" not in text and len(self._partial) + len(text) <= LINE_MAX_CHARS:
            self._partial += text  # print() writes its text, then its line end
            return len(text)
        if text == "\n" and "\r" not in self._partial:
            line, self._partial = self._partial, ""
            self._line(line)
            return 1
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._line(line)
        _, redraw, shown = self._partial.rpartition("\r")
        if redraw and shown:  # drawn over: only what a terminal would show now is kept
            self._redrawn, self._partial = True, shown
        if len(self._partial) > LINE_MAX_CHARS:  # a line without end: written as it is
            self._line(self._partial)
            self._partial = ""
        return len(text)

    def _line(self, line: str, publish: bool = True) -> None:
        if "\r" in line or self._redrawn:
            redrawn, self._redrawn = self._redrawn or "\r" in line.removesuffix("\r"), False
            line = line.removesuffix("\r")
            if redrawn:
                return
        if not line or line.isspace():
            return
        if publish:
            self.ctx.log(line, self.level)
        else:
            self.ctx.write_line(line, self.level)

    def finish(self) -> None:
        """Write what is left of an unfinished line (without publishing: the job is ending)."""
        partial, self._partial = self._partial, ""
        self._line(partial, publish=False)


class LogHandler(logging.Handler):
    """Sends the job's `logging` records (its own, not those of OWN_LOGGERS) to its log."""

    def __init__(self, ctx: RunContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setFormatter(logging.Formatter("%(message)s"))  # with the traceback of logger.exception

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        if any(name == own or name.startswith(own + ".") for own in OWN_LOGGERS):
            return
        self.ctx.log(self.format(record), level_name(record.levelno))


@contextmanager
def capturing(ctx: RunContext) -> Iterator[None]:
    """Inside this block, what the process prints and logs is the job's."""
    handler = LogHandler(ctx)
    root = logging.getLogger()
    root.addHandler(handler)
    stdout, stderr = LineWriter(ctx, "info"), LineWriter(ctx, "warning")
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            yield
    finally:
        root.removeHandler(handler)
        stdout.finish()
        stderr.finish()
