"""What a job is: its status, its state record, and the checks every entry point applies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

# uuid4 only: version nibble 4, variant 8-b. Lower case, as uuid.uuid4() prints it.
JOB_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


# The seed's job, and what a submit without a type runs.
DEFAULT_JOB_TYPE = "count"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class InvalidInput(ValueError):
    """Input refused before anything was created or queried; the message says what is allowed."""


class ServiceUnavailable(RuntimeError):
    """Redis or Kafka could not be reached, so nothing was done; the cause is logged, the message is
    for people. The only failure the service raises besides refusals of the caller's input."""

    def __init__(self) -> None:
        super().__init__("Jobstream cannot reach its services right now; please try again in a moment.")


class TooManyJobs(RuntimeError):
    """The submitter already holds as many unfinished jobs as they may; nothing was created."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"At most {limit} unfinished jobs each (MAX_UNFINISHED_JOBS): wait for one to finish or cancel one."
        )
        self.limit = limit


class TooManySubmits(RuntimeError):
    """The submitter sent more jobs than SUBMITS_PER_MINUTE allows; nothing was created.
    `retry_after_s`: when the next submit will be taken."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"Too many submits at once: try again in {retry_after_s} s.")
        self.retry_after_s = retry_after_s


class QueueFull(RuntimeError):
    """MAX_QUEUED_JOBS jobs wait for a worker already; nothing was created. `retry_after_s`: when a
    place should free up (the next start, as estimated)."""

    def __init__(self, waiting: int, retry_after_s: int) -> None:
        super().__init__(
            f"Jobstream is busy: {waiting:,} jobs are waiting for a worker. Try again in about {retry_after_s} s."
        )
        self.retry_after_s = retry_after_s


class JobStillRunning(RuntimeError):
    """The job has not finished: it cannot be run again yet."""

    def __init__(self) -> None:
        super().__init__("This job has not finished yet: cancel it or wait for it to end, then run it again.")


class JobNotFound(LookupError):
    """No job with this id exists (any more)."""


@dataclass(frozen=True, slots=True)
class JobState:
    """One record of a job's log and the latest state of a job: the same shape everywhere.

    `total` is 0 while a job has not said how many steps it has. `params` are the job's inputs:
    in its first and final records and in what the service answers, not in every progress message.
    `owner` is who submitted it (see tasks.owners): in its queued snapshot and the first record of
    each run, never in a progress message. `message` is what the job last said about its progress,
    `line` the last line it logged, `result` what its function returned (final records),
    `checkpoint` what it keeps across a resume (step records, see JobContext). `queue_position`
    (1 is next) and `starts_in` (seconds, an estimate) are only in answers about a queued job,
    never in its log.
    """

    job_id: str
    step: int
    total: int
    status: JobStatus
    ts: float
    started_at: float | None = None
    error: str | None = None
    job_type: str = DEFAULT_JOB_TYPE
    params: dict[str, Any] | None = None
    message: str | None = None
    result: Any = None
    checkpoint: dict[str, Any] | None = None
    line: str | None = None
    queue_position: int | None = None
    starts_in: float | None = None
    owner: str | None = None

    def supersedes(self, status: JobStatus, step: int) -> bool:
        """Whether this state moves a job last seen at `status` and `step` forward, so that the
        furthest state wins whatever order states arrive in: nothing moves a finished job, a
        finished state always does, a queued one never moves a started job, and otherwise the step
        must not go back."""
        if status.finished or (self.status is JobStatus.QUEUED and status is not JobStatus.QUEUED):
            return False
        return self.status.finished or self.step >= step

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready values; the job type's key is `type`, as the API names it."""
        # Shallow: the values go to JSON or a response model, never changed (asdict's deep copy of
        # params and results cost more than the encoding, once per progress message).
        data = {name: getattr(self, name) for name in JOB_STATE_FIELDS}
        data["type"] = data.pop("job_type")
        data["status"] = self.status.value
        return data

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in self.to_dict().items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> JobState:
        data = json.loads(raw)
        return cls(
            job_id=data["job_id"],
            step=int(data["step"]),
            total=int(data["total"]),
            status=JobStatus(data["status"]),
            ts=float(data["ts"]),
            started_at=data.get("started_at"),
            error=data.get("error"),
            # Records written before job types were count jobs.
            job_type=data.get("type", DEFAULT_JOB_TYPE),
            params=data.get("params"),
            message=data.get("message"),
            result=data.get("result"),
            checkpoint=data.get("checkpoint"),
            line=data.get("line"),
            queue_position=data.get("queue_position"),
            starts_in=data.get("starts_in"),
            owner=data.get("owner"),
        )


JOB_STATE_FIELDS = tuple(field.name for field in fields(JobState))


class LineKind(StrEnum):
    """What a record of a job's log is: a state (its steps, progress, first and final records), a
    line the job logged, or the traceback of the exception that failed it."""

    STATE = "state"
    LOG = "log"
    ERROR = "error"


# The levels of `logging`, by name, as ctx.log takes them.
LEVELS = ("debug", "info", "warning", "error", "critical")
# A record's first bytes when it is a line: a reader tells lines from states without parsing them.
LINE_PREFIX = b'{"kind":"'


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line a job logged (ctx.log, `logging`, print) or its traceback, beside its states in its
    log. `step` is how far the job was when it wrote the line."""

    job_id: str
    message: str
    ts: float
    level: str = "info"
    step: int = 0
    kind: LineKind = LineKind.LOG

    def to_dict(self) -> dict[str, Any]:
        # "kind" first: see LINE_PREFIX.
        return {
            "kind": self.kind.value,
            "job_id": self.job_id,
            "level": self.level,
            "step": self.step,
            "ts": self.ts,
            "message": self.message,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogLine:
        return cls(
            job_id=data["job_id"],
            message=str(data["message"]),
            ts=float(data["ts"]),
            level=data.get("level", "info"),
            step=int(data.get("step", 0)),
            kind=LineKind(data["kind"]),
        )


Record = JobState | LogLine


def record_kind(raw: bytes) -> LineKind:
    """The kind of a raw record, from its first bytes (a state record has no `kind`)."""
    if raw.startswith(LINE_PREFIX):
        end = raw.find(b'"', len(LINE_PREFIX))
        return LineKind(raw[len(LINE_PREFIX) : end].decode())
    return LineKind.STATE


def parse_record(raw: str | bytes) -> Record:
    """A record of a job's log: a state or a line."""
    data = raw.encode() if isinstance(raw, str) else raw
    if record_kind(data) is LineKind.STATE:
        return JobState.from_json(data)
    return LogLine.from_dict(json.loads(data))


def is_job_id(value: object) -> bool:
    """True for a lower-case uuid4 string: the only form a job id, topic or key is built from."""
    return isinstance(value, str) and len(value) == 36 and JOB_ID_RE.fullmatch(value) is not None


def check_job_id(value: object) -> str:
    """Return a well-formed job id or raise JobNotFound: a malformed id names no job."""
    if not is_job_id(value):
        raise JobNotFound("no such job")
    assert isinstance(value, str)
    return value
