"""The context a job's function runs with: its steps, its progress, its log lines, and the stop
it may be told.

`RunContext` implements tasks.jobtypes.JobContext. Progress is coalesced: whatever the function
calls (ctx.steps, ctx.progress, ctx.log, a tqdm bar), at most one publish per PROGRESS_INTERVAL_MS,
and a publish is also where a cancel is seen, so a job stops within the interval. Lines go to the
job's log as they come, batched by the producer as steps are, up to LOG_MAX_LINES per run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tasks import progress
from tasks.clients import Clients
from tasks.joblog import JobLogError, log_place
from tasks.jobtypes import JobType
from tasks.model import LEVELS, JobState, JobStatus, LineKind

# A progress message, and the latest log line, are a line on a card: longer ones are cut.
MESSAGE_MAX_CHARS = 200
# A log line is cut to this many characters; a traceback keeps its last ones (every record stays
# far below Kafka's 1 MB).
LINE_MAX_CHARS = 8192
TRACEBACK_MAX_CHARS = 65536


class JobStopped(BaseException):
    """The job must stop at once. Raised through the job's function from a ctx call or a tqdm
    iteration; a BaseException, so that the function's own `except Exception` lets it through."""


class JobCancelled(JobStopped):
    """Someone cancelled the job."""


class JobSuperseded(JobStopped):
    """Another worker holds the job's lease now: this copy must not write another record."""


class LogUnwritable(JobStopped):
    """The job's log could not be written (`error` says why)."""

    def __init__(self, error: JobLogError) -> None:
        super().__init__(str(error))
        self.error = error


class RunContext:
    """One run of one job: what its function reports, turned into log records and progress."""

    def __init__(
        self,
        job_id: str,
        job: JobType,
        c: Clients,
        publisher: progress.ProgressPublisher,
        started_at: float,
        resume_after: int = 0,
        total: int = 0,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.job = job
        self.c = c
        self.publisher = publisher
        self.started_at = started_at
        self.done = resume_after
        self.total = total
        self.message: str | None = None
        self.checkpoint: dict[str, Any] = dict(checkpoint or {})
        self._first_step = resume_after + 1
        self._stepping = False
        self._stepped = False
        self._superseded = False
        self._lock = threading.Lock()
        self.last_publish = time.monotonic()
        self.last_line: str | None = None  # as written; the card's line is made from it at a publish
        self.lines_kept = 0
        self.lines_dropped = 0
        self._max_lines = c.settings.log_max_lines
        self._place = log_place(c.settings, job_id)
        self._thread = threading.get_ident()  # the job's: only there may a call raise its stop

    def state(self, status: JobStatus = JobStatus.RUNNING, **final: Any) -> JobState:
        """The job's state now (`final`: error, result, params of a final state)."""
        return JobState(
            self.job_id,
            self.done,
            self.total,
            status,
            time.time(),
            self.started_at,
            job_type=self.job.name,
            message=self.message,
            line=None if self.last_line is None else self.last_line.strip().partition("\n")[0][:MESSAGE_MAX_CHARS],
            **final,
        )

    def steps(self, total: int) -> Iterator[int]:
        """See tasks.jobtypes.JobContext.steps. The hot loop of every stepping job: records are
        formatted by hand (at 150k+ steps/s, json.dumps per step is a third of the cost)."""
        if self._stepped:
            raise RuntimeError("ctx.steps can be used once per job: a job has one sequence of steps")
        if isinstance(total, bool) or not isinstance(total, int) or total < 0:
            raise ValueError(f"ctx.steps needs a whole number of steps, got {total!r}")
        self._stepped = self._stepping = True
        self.total = total
        self._publish_if_due()
        return self._steps(total)

    def _steps(self, total: int) -> Iterator[int]:
        c, job_id, publisher = self.c, self.job_id, self.publisher
        place = self._place
        head = (
            f'{{"job_id":"{job_id}","type":"{self.job.name}","total":{total},"status":"running",'
            f'"started_at":{self.started_at!r},"step":'
        )
        append, writer, now, clock = c.writer.append, c.writer, time.time, time.monotonic
        try:
            for step in range(self._first_step, total + 1):
                yield step
                ts = now()
                if self.checkpoint:
                    append(place, job_id, f'{head}{step},"ts":{ts!r},"checkpoint":{json.dumps(self.checkpoint)}}}')
                else:
                    append(place, job_id, f'{head}{step},"ts":{ts!r}}}')
                self.done = step
                if not step & 1023:
                    writer.poll()
                    writer.raise_on_error()
                if clock() >= publisher.next_due:
                    self._publish()
        except JobLogError as exc:
            raise LogUnwritable(exc) from exc
        finally:
            self._stepping = False

    def progress(self, done: int | None = None, total: int | None = None, message: str | None = None) -> None:
        """See tasks.jobtypes.JobContext.progress."""
        if done is not None:
            self.done = max(int(done), 0)
        if total is not None:
            self.total = max(int(total), 0)
        if message is not None:
            self.message = str(message)[:MESSAGE_MAX_CHARS]
        self._publish_if_due()

    def log(self, message: object, level: str = "info") -> None:
        """See tasks.jobtypes.JobContext.log."""
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}: one of {', '.join(LEVELS)}")
        self.write_line(str(message), level)
        if threading.get_ident() == self._thread:
            self._publish_if_due()

    def write_line(self, text: str, level: str) -> None:
        """Append a log line, within LOG_MAX_LINES (past it, only counted); the latest line also
        goes out with the next publish."""
        if len(text) > LINE_MAX_CHARS:
            text = f"{text[:LINE_MAX_CHARS]}… ({len(text):,} characters)"
        self.last_line = text
        if self.lines_kept >= self._max_lines:
            self.lines_dropped += 1
            return
        self.lines_kept += 1
        self._append(text, level, LineKind.LOG)
        if not self.lines_kept & 1023:
            try:
                self.c.writer.poll()
                self.c.writer.raise_on_error()
            except JobLogError as exc:
                raise LogUnwritable(exc) from exc

    def write_traceback(self, text: str) -> None:
        """Append the traceback of the exception that failed the job (its end, when it is long)."""
        if len(text) > TRACEBACK_MAX_CHARS:
            text = f"… ({len(text) - TRACEBACK_MAX_CHARS:,} characters left out)\n{text[-TRACEBACK_MAX_CHARS:]}"
        self._append(text, "error", LineKind.ERROR)

    def end_lines(self) -> None:
        """The run ends: say how many lines were not kept, if any were not."""
        if self.lines_dropped:
            limit = self.c.settings.log_max_lines
            text = f"{self.lines_dropped:,} more lines were not kept: a job keeps at most {limit:,} (LOG_MAX_LINES)"
            self._append(text, "warning", LineKind.LOG)

    def _append(self, text: str, level: str, kind: LineKind) -> None:
        # What LogLine.to_json writes, formatted by hand: a job may print a hundred thousand lines.
        record = (
            f'{{"kind":"{kind.value}","job_id":"{self.job_id}","level":"{level}","step":{self.done},'
            f'"ts":{time.time()!r},"message":{json.dumps(text, ensure_ascii=False)}}}'
        )
        try:
            self.c.writer.append(self._place, self.job_id, record)
        except JobLogError as exc:
            raise LogUnwritable(exc) from exc

    def follow_bar(self, bar: Any, items: Iterable[Any]) -> Iterator[Any]:
        """A tqdm bar's items, each one counted as it is done (see tasks.worker.tqdm_capture)."""
        done = bar.n
        for item in items:
            yield item
            done += 1
            self.bar_moved(bar, done)

    def bar_moved(self, bar: Any, done: int) -> None:
        """A tqdm bar reached `done`: the outermost bar is the job's progress, any bar may stop it."""
        if not self._stepping and not getattr(bar, "pos", 0):
            self.progress(done, int(bar.total or 0), bar.desc or None)
        else:
            self._publish_if_due()

    def _publish_if_due(self) -> None:
        """Publish unless the last publish is within the interval; a report outside `steps` is also
        a record of the job's log (steps log themselves)."""
        if time.monotonic() >= self.publisher.next_due:
            self._publish(log=not self._stepping)

    def _publish(self, log: bool = False) -> None:
        """Publish the state now (with `log`, also as a record of the job's log); raise the job's
        stop when it was cancelled or taken over."""
        if self._superseded:
            raise JobSuperseded
        state = self.state()
        with self._lock:
            try:
                cancelled = self.publisher.publish(state)
            except progress.LeaseLost:
                raise JobSuperseded from None
            self.last_publish = time.monotonic()
        if log:
            try:
                self.c.writer.append(self._place, self.job_id, state.to_json())
            except JobLogError as exc:
                raise LogUnwritable(exc) from exc
        if cancelled:
            raise JobCancelled

    def stop(self) -> JobStopped | None:
        """The stop the job has been told (a cancel, or another worker taking it over), if any."""
        if self._superseded:
            return JobSuperseded()
        return JobCancelled() if self.publisher.cancel_requested else None

    def heartbeat(self) -> None:
        """From the runner's heartbeat thread while the function runs: a function that reports
        nothing still renews its lease, shows its elapsed time, and learns of a cancel."""
        with self._lock:
            try:
                self.publisher.publish(self.state())
            except progress.LeaseLost:
                self._superseded = True
            self.last_publish = time.monotonic()
