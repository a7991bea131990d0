"""The operator's console's HTTP API, /api/ops/... (the logic is in tasks.ops; these routes stay thin).

What a caller learns without a valid operator credential: nothing. Every route but login needs an
operator session cookie (POST /api/ops/login) or an operator API token (`python -m tasks.tokens
create NAME --operator`, sent as `Authorization: Bearer <token>`), checked on the server before the
route reads its query or body; without one it answers 401 with one and the same body whatever was
wrong (no credential, a forged, tampered, expired or logged-out cookie, an owner's token, a revoked
token) and does nothing. Login tells only whether the password was right, and 429 when an address
tries too often. With the console off (OPS_PASSWORD_HASH empty) every route, login included, answers
404 as a route that does not exist, and the schema leaves them out. POSTs are under rxapp.api's
same-site rule (JSON only, and from ALLOWED_ORIGINS when an Origin is sent); the session cookie is
SameSite=Strict on top.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from reflex_base.config import get_config

from rxapp.api import POST_ERRORS, Error, after_cursor, error, read_json
from rxapp.session import client_address
from tasks.clients import clients
from tasks.model import InvalidInput, JobStatus
from tasks.ops import jobs as ops_jobs
from tasks.ops import sessions, stats
from tasks.ops import workers as ops_workers
from tasks.ops.passwords import MAX_PASSWORD_CHARS

DENIED = "operator login required: POST /api/ops/login, or an operator token (Authorization: Bearer <token>)"


class OpsNotAuthenticated(PermissionError):
    pass


def console_on() -> None:
    """Every /api/ops route is absent (404) while the console is off."""
    if not clients().settings.ops_console:
        raise HTTPException(status_code=404)


@dataclass(frozen=True)
class Operator:
    """Who is acting: `who` for the logs; `session_id` when it is a login session (else a token)."""

    who: str
    session_id: str | None = None


def operator_of(request: Request) -> Operator:
    """The operator a request comes from: a valid operator token, or a valid session cookie;
    OpsNotAuthenticated (401) otherwise. Redis is asked only about a cookie whose signature is right."""
    c = clients()
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and (info := c.tokens.operator(token.strip())) is not None:
            return Operator(f"token {info.name}")
    value = request.cookies.get(sessions.COOKIE_NAME)
    if value and (session_id := sessions.session_of(value, c.settings, c.redis)) is not None:
        return Operator(f"session {session_id[:6]}", session_id)
    raise OpsNotAuthenticated(DENIED)


OperatorDep = Annotated[Operator, Depends(operator_of)]
DENIED_RESPONSE: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No valid operator session or operator token (always the same body)"},
    404: {"description": "The console is off (OPS_PASSWORD_HASH empty)"},
    503: {"model": Error, "description": "Redis or the history store unreachable"},
}

ops = APIRouter(prefix="/api/ops", tags=["operator"], dependencies=[Depends(console_on)])


def not_authenticated(_request: Request, exc: OpsNotAuthenticated) -> JSONResponse:
    answer = error(401, str(exc))
    answer.headers["WWW-Authenticate"] = 'Bearer realm="jobstream-ops"'
    return answer


def too_many_logins(_request: Request, exc: sessions.TooManyLogins) -> JSONResponse:
    answer = error(429, str(exc))
    answer.headers["Retry-After"] = str(exc.retry_after_s)
    return answer


def wrong_password(_request: Request, _exc: sessions.WrongPassword) -> JSONResponse:
    return error(401, "wrong password")


# Installed on the app by rxapp.api, which includes this router.
EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    OpsNotAuthenticated: not_authenticated,
    sessions.TooManyLogins: too_many_logins,
    sessions.WrongPassword: wrong_password,
}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def body_of(model: type[Body], raw: object) -> Any:
    """The body as `model`; InvalidInput (422) naming each refused field otherwise."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        reasons = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise InvalidInput("; ".join(reasons)) from None


def json_body(model: type[Body]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself (after checking the caller)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


# -- login --------------------------------------------------------------------------------------


class LoginBody(Body):
    password: StrictStr = Field(max_length=MAX_PASSWORD_CHARS)


class LoggedIn(BaseModel):
    expires_at: int = Field(description="Unix time the session ends (its cookie's end too)")


@ops.post(
    "/login",
    response_model=LoggedIn,
    openapi_extra=json_body(LoginBody),
    responses={
        401: {"model": Error, "description": "Wrong password"},
        404: DENIED_RESPONSE[404],
        429: {"model": Error, "description": "Past OPS_LOGINS_PER_MINUTE from this address (with Retry-After)"},
        **POST_ERRORS,
    },
)
async def login(request: Request) -> Response:
    """Log in with the operator's password: the answer sets the session cookie (`jobstream_ops`,
    HttpOnly, SameSite=Strict, for OPS_SESSION_HOURS)."""
    body = body_of(LoginBody, await read_json(request))
    settings = clients().settings
    address = client_address(request.scope, get_config().trusted_proxy_hops)
    value = await run_in_threadpool(sessions.login, body.password, address, settings, clients().redis)
    expires_at = int(value.partition(".")[0])
    answer = JSONResponse({"expires_at": expires_at}, headers={"cache-control": "no-store"})
    answer.headers.append("set-cookie", sessions.set_cookie_header(value, settings))
    return answer


@ops.post("/logout", status_code=204, responses={**DENIED_RESPONSE, **POST_ERRORS})
def logout(operator: OperatorDep) -> Response:
    """End the session: its cookie, and any copy of it, is refused from now on (a token stays valid)."""
    if operator.session_id is not None:
        sessions.logout(operator.session_id, clients().redis)
    answer = Response(status_code=204, headers={"cache-control": "no-store"})
    answer.headers.append("set-cookie", sessions.clear_cookie_header(clients().settings))
    return answer


# -- jobs ---------------------------------------------------------------------------------------


class OpsJob(BaseModel):
    job_id: str
    type: str
    owner: str | None = Field(description="The owner as a tag: the same for each of their jobs, not their id")
    params: str | None = Field(description=f"The params as JSON, cut at {ops_jobs.PARAMS_MAX_CHARS} characters")
    status: JobStatus
    step: int
    total: int = Field(description="Steps in all; 0 while the job has not said")
    started_at: float | None
    duration: float | None = Field(description="Seconds from its start to its end, or until now while it runs")


class OpsJobPage(BaseModel):
    jobs: list[OpsJob]
    next: str | None = Field(description="Pass as `before` for the next page; null on the last")


@ops.get("/jobs", response_model=OpsJobPage, responses={**DENIED_RESPONSE, 422: {"model": Error}})
def list_jobs(
    _operator: OperatorDep,
    status: Annotated[list[JobStatus], Query(description="Only jobs in these statuses (repeat it for several)")] = [],  # noqa: B006
    type: str | None = Query(None, max_length=100, description="Only jobs of this type"),
    id_prefix: str | None = Query(
        None, max_length=36, pattern=r"^[0-9a-fA-F-]+$", description="Only jobs whose id starts so"
    ),
    before: str | None = Query(None, max_length=64, description="`next` of the previous page"),
    limit: int = Query(50, ge=1, le=ops_jobs.PAGE_MAX, description="Most jobs to answer with"),
) -> OpsJobPage:
    """Every owner's jobs that a worker started, newest first, from the history store (for their
    retention); running ones with their live progress from Redis."""
    after = None if before is None else after_cursor(before)
    rows = ops_jobs.list_jobs(clients(), frozenset(status), type, id_prefix, after, limit)
    last = rows[-1] if len(rows) == limit else None
    return OpsJobPage(
        jobs=[OpsJob(**asdict(row)) for row in rows],
        next=None if last is None else f"{last.started_at or 0.0!r}_{last.job_id}",
    )


# -- workers and queue --------------------------------------------------------------------------


class Worker(BaseModel):
    name: str = Field(description="Celery's node name")
    host: str
    pid: int
    concurrency: int
    running: list[str] = Field(description="Ids of the jobs it runs now (none once gone)")
    started_at: float
    last_seen: float = Field(description="Unix time of its last heartbeat")
    status: Literal["online", "gone"] = Field(
        description=f"gone: not heard from for {ops_workers.WORKER_TIMEOUT_S:.0f} s, or shut down; "
        f"listed for {ops_workers.GONE_KEEP_S} s"
    )


class WaitingJob(BaseModel):
    job_id: str
    type: str | None
    owner: str | None
    submitted_at: float
    waiting_s: float


class WorkersAndQueue(BaseModel):
    workers: list[Worker]
    queue_depth: int = Field(description="Jobs waiting for a worker")
    longest_waiting: list[WaitingJob] = Field(description=f"The {ops_workers.LONGEST_WAITING} jobs waiting longest")


@ops.get("/workers", response_model=WorkersAndQueue, responses=DENIED_RESPONSE)
def list_workers(_operator: OperatorDep) -> WorkersAndQueue:
    """Each Celery worker seen in the last hour (online or gone), the queue's depth and the jobs waiting longest."""
    return WorkersAndQueue(**asdict(ops_workers.list_workers(clients())))


# -- stats --------------------------------------------------------------------------------------


class Minute(BaseModel):
    minute: int = Field(description="Unix time the minute began")
    finished: dict[str, int] = Field(description="Jobs that ended in it, by status")
    steps_per_s: float = Field(description="Steps a second across all jobs (the current minute: so far)")
    queue_depth: int | None = Field(description="The deepest the queue was seen in it (null: no worker saw it)")


class Stats(BaseModel):
    minutes: list[Minute] = Field(description="Oldest first; the current minute last")


@ops.get("/stats", response_model=Stats, responses={**DENIED_RESPONSE, 422: {"model": Error}})
def get_stats(
    _operator: OperatorDep,
    minutes: int = Query(60, ge=1, le=stats.MAX_MINUTES, description="How many minutes back"),
) -> Stats:
    """Minute by minute: jobs that ended by status, steps a second, queue depth."""
    return Stats(minutes=[Minute(**asdict(point)) for point in stats.stats(clients(), minutes)])


# -- bulk actions -------------------------------------------------------------------------------


class CancelQueuedBody(Body):
    type: StrictStr = Field(min_length=1, max_length=ops_jobs.TYPE_MAX_CHARS)
    confirm: StrictBool = Field(False, description="Must be true: without it nothing is done (400)")


class CancelledJobs(BaseModel):
    cancelled: list[str]
    more: bool = Field(description=f"More were waiting than one call cancels ({ops_jobs.BULK_MAX})")


class RerunFailedBody(Body):
    since_minutes: StrictInt = Field(60, ge=1, le=ops_jobs.RERUN_WINDOW_MAX_MINUTES)
    confirm: StrictBool = Field(False, description="Must be true: without it nothing is done (400)")


class RerunOne(BaseModel):
    job_id: str = Field(description="The failed job")
    new_job_id: str


class RefusedOne(BaseModel):
    job_id: str
    error: str


class RerunJobs(BaseModel):
    rerun: list[RerunOne]
    new_job_ids: list[str]
    refused: list[RefusedOne] = Field(description="Not run again, with why (its owner's limits, its type gone...)")
    already_rerun: list[str] = Field(description="Run again by an earlier call: not again")
    more: bool = Field(description=f"More failed than one call runs again ({ops_jobs.BULK_MAX})")


NOT_CONFIRMED: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Not confirmed (nothing done; `matching` says how many it would touch)"}
}


def not_confirmed(what: str, matching: int) -> JSONResponse:
    message = f'nothing was done: this would {what}; send "confirm": true to do it'
    return JSONResponse({"error": message, "matching": matching}, status_code=400)


@ops.post(
    "/actions/cancel-queued",
    response_model=CancelledJobs,
    openapi_extra=json_body(CancelQueuedBody),
    responses={**DENIED_RESPONSE, **NOT_CONFIRMED, 422: {"model": Error}, **POST_ERRORS},
)
async def cancel_queued(request: Request, operator: OperatorDep) -> Any:
    """Cancel every job of a type that waits for a worker (at most 1,000 a call)."""
    body = body_of(CancelQueuedBody, await read_json(request))
    if not body.confirm:
        matching = await run_in_threadpool(ops_jobs.count_queued, clients(), body.type)
        return not_confirmed(f"cancel {matching} queued {body.type} jobs", matching)
    done = await run_in_threadpool(ops_jobs.cancel_queued, clients(), body.type, operator.who)
    return CancelledJobs(cancelled=done.cancelled, more=done.more)


@ops.post(
    "/actions/rerun-failed",
    response_model=RerunJobs,
    openapi_extra=json_body(RerunFailedBody),
    responses={**DENIED_RESPONSE, **NOT_CONFIRMED, 422: {"model": Error}, **POST_ERRORS},
)
async def rerun_failed(request: Request, operator: OperatorDep) -> Any:
    """Run again every job that failed in the last `since_minutes` (at most 1,000 a call), each as a
    new job of its owner's, within that owner's limits."""
    body = body_of(RerunFailedBody, await read_json(request))
    if not body.confirm:
        matching = await run_in_threadpool(ops_jobs.count_failed, clients(), body.since_minutes)
        what = f"run again {matching} jobs that failed in the last {body.since_minutes} minutes"
        return not_confirmed(what, matching)
    done = await run_in_threadpool(ops_jobs.rerun_failed, clients(), body.since_minutes, operator.who)
    return RerunJobs(
        rerun=[RerunOne(job_id=old, new_job_id=new) for old, new in done.rerun.items()],
        new_job_ids=list(done.rerun.values()),
        refused=[RefusedOne(job_id=r.job_id, error=r.error) for r in done.refused],
        already_rerun=done.already_rerun,
        more=done.more,
    )
