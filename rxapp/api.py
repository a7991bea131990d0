"""The HTTP API on the Reflex backend: list job types; submit, read, read the log of, cancel and run again jobs.

Every /api route needs an API token (`Authorization: Bearer <token>`, see tasks.tokens) unless
API_ALLOW_ANONYMOUS is on; a token sees only the jobs submitted with it.

Errors are JSON `{"error": "..."}`: 400 for a body that is not JSON, 401 without a valid token,
403 for a POST from a page of another site (its Origin is not in ALLOWED_ORIGINS), 413 for a body
that is too large, 415 for a POST that is not `application/json` (a plain cross-site form), 422
for an unknown type, bad params (with `fields`: each bad param and what is allowed) or a bad query
parameter, 404 for an unknown or malformed id or another owner's job, 409 to run again a job that
has not finished, 429 past the owner's limits (SUBMITS_PER_MINUTE with Retry-After,
MAX_UNFINISHED_JOBS), 503 when Redis or Kafka is down, or when MAX_QUEUED_JOBS jobs wait already
(then with Retry-After).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from rxapp.session import SESSION_PATH, cookie_value, owner_of_ticket, set_cookie_header
from tasks import service
from tasks.clients import clients
from tasks.jobtypes import InvalidParams
from tasks.model import (
    DEFAULT_JOB_TYPE,
    InvalidInput,
    JobNotFound,
    JobState,
    JobStatus,
    JobStillRunning,
    LineKind,
    LogLine,
    QueueFull,
    Record,
    ServiceUnavailable,
    TooManyJobs,
    TooManySubmits,
    is_job_id,
)
from tasks.owners import ANONYMOUS


class Job(BaseModel):
    """A job's latest state."""

    job_id: str
    type: str = Field(description="The job's type (GET /api/job-types)")
    status: JobStatus
    step: int
    total: int = Field(description="Steps in all; 0 while the job has not said")
    ts: float = Field(description="Unix time of this state")
    started_at: float | None = None
    error: str | None = None
    params: dict[str, Any] | None = Field(None, description="The job's inputs, defaults filled in")
    message: str | None = Field(None, description="What the job last said about its progress")
    result: Any = Field(None, description="What the job's function returned, once it succeeded")
    line: str | None = Field(None, description="The last line the job logged (its first line, cut)")
    queue_position: int | None = Field(None, description="While queued: its place in line, 1 is next")
    starts_in: float | None = Field(None, description="While queued: seconds until it starts, an estimate")


class JobType(BaseModel):
    """A job type: what it is called and the JSON schema of its params."""

    name: str
    title: str
    description: str
    resumes: bool = Field(description="Whether a job of this type resumes after its last step when its worker dies")
    on_worker_lost: str = Field(description="resume, restart (from the beginning) or fail")
    params_schema: dict[str, Any]


class Error(BaseModel):
    error: str
    fields: dict[str, str] | None = Field(None, description="Each refused param and what is allowed")


class StateRecord(Job):
    """A state of the job: the first record of each run (with the params), one per step or
    progress report, and the final one."""

    kind: Literal["state"] = "state"


class LineRecord(BaseModel):
    """A line the job logged (ctx.log, logging, print), or the traceback that failed it (`error`)."""

    kind: Literal["log", "error"]
    job_id: str
    level: str = Field(description="debug, info, warning, error or critical")
    step: int = Field(description="The job's step when it wrote the line")
    ts: float
    message: str


class JobLog(BaseModel):
    """A page of a job's log, oldest first: its states and its lines, each with its `kind`."""

    job_id: str
    records: list[Annotated[StateRecord | LineRecord, Field(discriminator="kind")]]
    next_offset: int = Field(description="The offset to ask for to read on")
    end: bool = Field(description="Whether the log had no more records when read; a running job's log grows")


EXAMPLE = '{"type": "count", "params": {"n": 1000}}'

# A page of steps is about 100 bytes a record; of lines up to 8 KB (their limit): a page also stops
# at about a megabyte (tasks.joblog.PAGE_MAX_BYTES).
LOG_PAGE_MAX = 1_000
# Offsets are Kafka's (64-bit); kept within what every JSON reader holds exactly.
OFFSET_MAX = 2**53


# The submit body: a job type and its params (one schema per type, filled in by openapi_schema),
# or the seed's `{"n": N}`, a count job.
SUBMIT_BODY: dict[str, Any] = {"required": True, "content": {"application/json": {"schema": {"oneOf": []}}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error, "description": text}
    for code, text in {
        401: "No valid API token",
        404: "No such job (or not yours)",
        503: "Redis or Kafka unreachable",
    }.items()
}
LIMITED: dict[str, Any] = {
    "model": Error,
    "description": "Past SUBMITS_PER_MINUTE (with Retry-After) or MAX_UNFINISHED_JOBS",
}
# What every POST may also answer: see same_site_posts.
POST_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": Error, "description": "From a page of another site"},
    415: {"model": Error, "description": "Not sent as application/json"},
}
# The body of a POST that takes none: an empty JSON object, or nothing, sent as application/json.
NO_BODY: dict[str, Any] = {
    "required": False,
    "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
}

api = FastAPI(title="Jobstream API", version="1.0")


def openapi_schema() -> dict[str, Any]:
    """FastAPI's schema with a submit body per job type, built on its first request (the catalog
    and the bounds the settings give are not read at import)."""
    if api.openapi_schema is None:
        schema = FastAPI.openapi(api)
        body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for job in clients().catalog.values():
            params = job.params_model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(params.pop("$defs", {}))
            components[f"{job.name}_params"] = params
            body["oneOf"].append(
                {
                    "title": job.title,
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "params"],
                    "properties": {
                        "type": {"const": job.name},
                        "params": {"$ref": f"#/components/schemas/{job.name}_params"},
                    },
                }
            )
        if not clients().settings.ops_console:  # the console's routes are absent: see rxapp.ops_api
            schema["paths"] = {path: item for path, item in schema["paths"].items() if not path.startswith("/api/ops/")}
        n = components[f"{DEFAULT_JOB_TYPE}_params"]["properties"]["n"]
        body["oneOf"].append(
            {
                "title": "Count to n (the first API's body)",
                "type": "object",
                "additionalProperties": False,
                "required": ["n"],
                "properties": {"n": n},
            }
        )
        return schema
    return api.openapi_schema


api.openapi = openapi_schema  # type: ignore[method-assign]

DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")


def without_docs(app: FastAPI) -> None:
    """Take the interactive docs away (API_DOCS off): their page loads scripts from a CDN, which a
    deployment should not serve from its own origin. The schema stays at /openapi.json."""
    app.router.routes = [route for route in app.router.routes if getattr(route, "path", None) not in DOCS_PATHS]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@api.middleware("http")
async def same_site_posts(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """A POST changes something: only from a page of an allowed origin (or a client that sends no
    Origin, such as a script), and only as JSON, which a cross-site form cannot send without asking
    first (CORS preflight)."""
    if request.method == "POST":
        origin = request.headers.get("origin")
        if origin is not None and origin not in clients().settings.allowed_origins:
            return error(403, "requests from pages of other sites are refused (ALLOWED_ORIGINS)")
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "application/json":
            return error(415, "send the request as JSON, with the header Content-Type: application/json")
    return await call_next(request)


class NotAuthenticated(PermissionError):
    pass


def owner_of(request: Request) -> str:
    """The caller as an owner of jobs: its API token's, or the anonymous owner where
    API_ALLOW_ANONYMOUS is on; NotAuthenticated (401) otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        if clients().settings.api_allow_anonymous:
            return ANONYMOUS
        raise NotAuthenticated(
            "this API needs a token, sent as Authorization: Bearer <token>; "
            "`python -m tasks.tokens create NAME` makes one (make run writes one to <RUN_DIR>/api-token)"
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticated("send the token as Authorization: Bearer <token>")
    owner = clients().tokens.owner(token.strip())
    if owner is None:
        raise NotAuthenticated("this token is not valid: it was revoked, or never made")
    return owner


Owner = Annotated[str, Depends(owner_of)]


@api.exception_handler(NotAuthenticated)
async def not_authenticated(_request: Request, exc: NotAuthenticated) -> JSONResponse:
    answer = error(401, str(exc))
    answer.headers["WWW-Authenticate"] = 'Bearer realm="jobstream"'
    return answer


def retry_later(status: int, exc: TooManySubmits | QueueFull) -> JSONResponse:
    """A refusal that says when to try again (Retry-After, in seconds)."""
    answer = error(status, str(exc))
    answer.headers["Retry-After"] = str(exc.retry_after_s)
    return answer


@api.exception_handler(TooManySubmits)
async def too_many_submits(_request: Request, exc: TooManySubmits) -> JSONResponse:
    return retry_later(429, exc)


@api.exception_handler(TooManyJobs)
async def too_many_jobs(_request: Request, exc: TooManyJobs) -> JSONResponse:
    return error(429, str(exc))


@api.exception_handler(JobNotFound)
async def not_found(_request: Request, _exc: JobNotFound) -> JSONResponse:
    return error(404, "no such job")


@api.exception_handler(InvalidInput)
async def invalid(_request: Request, exc: InvalidInput) -> JSONResponse:
    if isinstance(exc, InvalidParams):
        return JSONResponse({"error": str(exc), "fields": exc.errors}, status_code=422)
    return error(422, str(exc))


@api.exception_handler(RequestValidationError)
async def bad_query(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """Say which parameter is wrong and why, in the API's one error shape."""
    reasons = [f"{'.'.join(str(part) for part in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
    return error(422, "; ".join(reasons))


@api.exception_handler(JobStillRunning)
async def still_running(_request: Request, exc: JobStillRunning) -> JSONResponse:
    return error(409, str(exc))


@api.exception_handler(QueueFull)
async def queue_full(_request: Request, exc: QueueFull) -> JSONResponse:
    return retry_later(503, exc)


@api.exception_handler(ServiceUnavailable)
async def unavailable(_request: Request, _exc: ServiceUnavailable) -> JSONResponse:
    return error(503, "a service Jobstream needs is unreachable; try again in a moment")


async def read_json(request: Request) -> Any:
    """The request's JSON body, within MAX_BODY_BYTES; raises InvalidInput with the reason."""
    limit = clients().settings.max_body_bytes
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the request body may be at most {limit} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: JSON nested too deep
        raise BadBody(f"the body must be JSON, such as {EXAMPLE}") from None


class BodyTooLarge(ValueError):
    pass


class BadBody(ValueError):
    pass


@api.exception_handler(BodyTooLarge)
async def too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
    return error(413, str(exc))


@api.exception_handler(BadBody)
async def bad_body(_request: Request, exc: BadBody) -> JSONResponse:
    return error(400, str(exc))


@api.post(
    "/api/jobs",
    status_code=202,
    response_model=Job,
    openapi_extra={"requestBody": SUBMIT_BODY},
    responses={
        400: {"model": Error},
        401: ERRORS[401],
        413: {"model": Error},
        422: {"model": Error},
        429: LIMITED,
        503: ERRORS[503],
        **POST_ERRORS,
    },
)
async def submit(request: Request, owner: Owner) -> Job:
    """Queue a job: `{"type": ..., "params": {...}}`, or `{"n": N}` for a count job; answers at
    once with its id. Nothing is created when the type or the params are refused, or when the
    caller is past its limits."""
    job_type, params = submitted(await read_json(request))
    state = await run_in_threadpool(service.submit_job, job_type, params, clients(), owner)
    return Job(**state.to_dict())


def submitted(body: object) -> tuple[object, object]:
    """The job type and params a submit body asks for; InvalidInput when its shape is wrong."""
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object, such as {EXAMPLE}")
    typed = "type" in body or "params" in body
    allowed = ("type", "params") if typed else ("n",)
    unknown = [str(key)[:40] for key in body if key not in allowed]
    if unknown:
        raise InvalidInput(f"unknown field {', '.join(unknown)}: a body has only {' and '.join(allowed)}")
    if not typed:  # the seed's body
        return DEFAULT_JOB_TYPE, body
    return body.get("type", DEFAULT_JOB_TYPE), body.get("params", {})


@api.post(SESSION_PATH, status_code=204, include_in_schema=False)
async def keep_session(request: Request) -> Response:
    """The page's first load hands its new session's ticket here (see rxapp.session): the answer
    sets the browser's HttpOnly session cookie. A ticket that is not valid sets nothing (403)."""
    settings = clients().settings
    if not settings.session_secret:  # the API served alone, without the app's sessions
        return error(503, "sessions are not configured here (SESSION_SECRET)")
    body = await read_json(request)
    value = body.get("ticket") if isinstance(body, dict) else None
    owner = owner_of_ticket(value, settings.session_secret, time.time()) if isinstance(value, str) else None
    if owner is None:
        return error(403, "this session ticket is not valid or has expired: reload the page")
    answer = Response(status_code=204, headers={"cache-control": "no-store"})
    cookie = cookie_value(owner, settings.session_secret)
    answer.headers.append("set-cookie", set_cookie_header(cookie, settings.api_url.startswith("https://")))
    return answer


@api.get("/api/job-types", response_model=list[JobType], responses={401: ERRORS[401]})
def job_types(_owner: Owner) -> list[JobType]:
    """Every job type a submit may name, with the JSON schema of its params."""
    return [
        JobType(
            name=job.name,
            title=job.title,
            description=job.description,
            resumes=job.resumable,
            on_worker_lost=job.on_worker_lost,
            params_schema=job.schema(),
        )
        for job in clients().catalog.values()
    ]


class JobHistory(BaseModel):
    """A page of the caller's jobs, newest first."""

    jobs: list[Job]
    next: str | None = Field(description="Pass as `before` for the next page; null on the last")


def cursor(state: JobState) -> str:
    """Where a page of history ended: the last job's start (exactly, as repr keeps a float) and id."""
    return f"{state.started_at or 0.0!r}_{state.job_id}"


def after_cursor(before: str) -> tuple[float, str]:
    """The (started_at, job_id) a `cursor` names; InvalidInput for anything else."""
    ts_text, _, job_id = before.partition("_")
    try:
        ts = float(ts_text)
    except ValueError:
        ts = -1.0
    if not (0 <= ts < 1e11 and is_job_id(job_id)):
        raise InvalidInput("before must be the `next` of a previous page")
    return ts, job_id


@api.get("/api/jobs", response_model=JobHistory, responses={401: ERRORS[401], 422: {"model": Error}, 503: ERRORS[503]})
def job_history(
    owner: Owner,
    status: Annotated[list[JobStatus], Query(description="Only jobs in these statuses (repeat it for several)")] = [],  # noqa: B006
    type: str | None = Query(None, max_length=100, description="Only jobs of this type"),
    before: str | None = Query(None, max_length=64, description="`next` of the previous page"),
    limit: int = Query(50, ge=1, le=service.HISTORY_PAGE_MAX, description="Most jobs to answer with"),
) -> JobHistory:
    """The caller's jobs that a worker started, newest first, for their retention (from the history
    store, so a job's end is listed once the store has read it)."""
    after = None if before is None else after_cursor(before)
    jobs = service.job_history(owner, clients(), frozenset(status), type, after, limit)
    return JobHistory(
        jobs=[Job(**state.to_dict()) for state in jobs], next=cursor(jobs[-1]) if len(jobs) == limit else None
    )


@api.get("/api/jobs/{job_id}", response_model=Job, responses=ERRORS)
def get_job(job_id: str, owner: Owner) -> Job:
    """The job's latest state (from Redis, or from its Kafka log when Redis lost it)."""
    return Job(**service.get_job(job_id, clients(), owner).to_dict())


@api.get("/api/jobs/{job_id}/log", response_model=JobLog, responses={**ERRORS, 422: {"model": Error}})
def job_log(
    job_id: str,
    owner: Owner,
    offset: int = Query(0, ge=0, le=OFFSET_MAX, description="Where to start: 0 is the job's first record"),
    limit: int = Query(1000, ge=1, le=LOG_PAGE_MAX, description="Most records to answer with"),
    kind: Annotated[list[LineKind], Query(description="Only records of these kinds (repeat it for several)")] = [],  # noqa: B006
) -> JobLog:
    """The job's history from its Kafka log, a page at a time: follow `next_offset` until `end`.
    With `kind`, a page may hold fewer records than `limit` (even none) before the end."""
    page = service.read_log(job_id, offset, limit, clients(), frozenset(kind) or None, owner)
    records = [log_record(record) for record in page.records]
    return JobLog(job_id=job_id, records=records, next_offset=page.next_offset, end=page.end)


def log_record(record: Record) -> StateRecord | LineRecord:
    if isinstance(record, LogLine):
        return LineRecord(**record.to_dict())
    return StateRecord(**record.to_dict())


@api.post(
    "/api/jobs/{job_id}/cancel",
    response_model=Job,
    responses={**ERRORS, **POST_ERRORS},
    openapi_extra={"requestBody": NO_BODY},
)
def cancel_job(job_id: str, owner: Owner) -> Job:
    """Stop the job: a queued one never starts, a running one stops within PROGRESS_INTERVAL_MS."""
    return Job(**service.cancel_job(job_id, clients(), owner).to_dict())


@api.post(
    "/api/jobs/{job_id}/rerun",
    status_code=202,
    response_model=Job,
    responses={
        **ERRORS,
        **POST_ERRORS,
        409: {"model": Error, "description": "The job has not finished"},
        422: {"model": Error},
        429: LIMITED,
    },
    openapi_extra={"requestBody": NO_BODY},
)
def rerun_job(job_id: str, owner: Owner) -> Job:
    """Queue a new job of the same type with the same params as this finished one; answers with the new job."""
    return Job(**service.rerun_job(job_id, clients(), owner).to_dict())


# The operator's console's routes (rxapp.ops_api), beside these: they use this module's helpers.
from rxapp.ops_api import EXCEPTION_HANDLERS, ops  # noqa: E402

api.include_router(ops)
for _exception, _handler in EXCEPTION_HANDLERS.items():
    api.add_exception_handler(_exception, _handler)
