"""The HTTP API on the Reflex backend: submit, read, read the log of and cancel jobs by id.

Errors are JSON `{"error": "..."}`: 400 for a body that is not JSON, 413 for one that is too
large, 422 for a bad `n` or query parameter, 404 for an unknown or malformed id, 503 when Redis or
Kafka is down.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tasks import service
from tasks.clients import clients
from tasks.model import InvalidInput, JobNotFound, JobStatus, ServiceUnavailable


class Job(BaseModel):
    """A job's latest state."""

    job_id: str
    status: JobStatus
    step: int
    total: int
    ts: float = Field(description="Unix time of this state")
    started_at: float | None = None
    error: str | None = None


class Error(BaseModel):
    error: str


class JobLog(BaseModel):
    """A page of a job's log: one record per step, then the final one."""

    job_id: str
    records: list[Job]
    next_offset: int = Field(description="The offset to ask for to read on")
    end: bool = Field(description="Whether the log had no more records when read; a running job's log grows")


# A page of 10,000 records is about 1 MB of JSON.
LOG_PAGE_MAX = 10_000
# Offsets are Kafka's (64-bit); kept within what every JSON reader holds exactly.
OFFSET_MAX = 2**53


SUBMIT_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["n"],
                "properties": {
                    "n": {
                        "description": "Number of steps: a whole number from 1 to MAX_N, or a string of digits",
                        "oneOf": [
                            {"type": "integer", "minimum": 1},  # "maximum": MAX_N, see openapi_schema
                            {"type": "string", "pattern": r"^\s*0*[1-9][0-9]*\s*$"},
                        ],
                    }
                },
            }
        }
    },
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Error, "description": text}
    for code, text in {404: "No such job", 503: "Redis or Kafka unreachable"}.items()
}

api = FastAPI(title="Jobstream API", version="1.0")


def openapi_schema() -> dict[str, Any]:
    """FastAPI's schema with the bounds the settings give, built on its first request (not at import)."""
    if api.openapi_schema is None:
        schema = FastAPI.openapi(api)
        body = schema["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        body["properties"]["n"]["oneOf"][0]["maximum"] = clients().settings.max_n
        return schema
    return api.openapi_schema


api.openapi = openapi_schema  # type: ignore[method-assign]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@api.exception_handler(JobNotFound)
async def not_found(_request: Request, _exc: JobNotFound) -> JSONResponse:
    return error(404, "no such job")


@api.exception_handler(InvalidInput)
async def invalid(_request: Request, exc: InvalidInput) -> JSONResponse:
    return error(422, str(exc))


@api.exception_handler(RequestValidationError)
async def bad_query(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """Say which parameter is wrong and why, in the API's one error shape."""
    reasons = [f"{'.'.join(str(part) for part in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
    return error(422, "; ".join(reasons))


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
        raise BadBody('the body must be JSON, such as {"n": 1000}') from None


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
    responses={400: {"model": Error}, 413: {"model": Error}, 422: {"model": Error}, 503: ERRORS[503]},
)
async def submit(request: Request) -> Job:
    """Queue a job of `n` steps; answers at once with its id."""
    body = await read_json(request)
    if not isinstance(body, dict) or "n" not in body:
        raise InvalidInput('the body must be a JSON object with "n", such as {"n": 1000}')
    state = await run_in_threadpool(service.submit_job, body["n"], clients())
    return Job(**state.to_dict())


@api.get("/api/jobs/{job_id}", response_model=Job, responses=ERRORS)
def get_job(job_id: str) -> Job:
    """The job's latest state (from Redis, or from its Kafka log when Redis lost it)."""
    return Job(**service.get_job(job_id, clients()).to_dict())


@api.get("/api/jobs/{job_id}/log", response_model=JobLog, responses={**ERRORS, 422: {"model": Error}})
def job_log(
    job_id: str,
    offset: int = Query(0, ge=0, le=OFFSET_MAX, description="Where to start: 0 is the job's first record"),
    limit: int = Query(1000, ge=1, le=LOG_PAGE_MAX, description="Most records to answer with"),
) -> JobLog:
    """The job's history from its Kafka log, a page at a time: follow `next_offset` until `end`."""
    page = service.read_log(job_id, offset, limit, clients())
    records = [Job(**record.to_dict()) for record in page.records]
    return JobLog(job_id=job_id, records=records, next_offset=page.next_offset, end=page.end)


@api.post("/api/jobs/{job_id}/cancel", response_model=Job, responses=ERRORS)
def cancel_job(job_id: str) -> Job:
    """Stop the job: a queued one never starts, a running one stops within PROGRESS_INTERVAL_MS."""
    return Job(**service.cancel_job(job_id, clients()).to_dict())
