"""Job types: a job is a typed Python function, registered with `@job_type`.

The function's first parameter is the job's context (`JobContext`); the others are its inputs. Their
type hints become one pydantic model per type, the single check of a job's params for the API,
the page and the worker, and its JSON schema is what the API lists and the page builds a form from.

The catalog is every module in `tasks/catalog/` plus the modules named in JOB_MODULES, imported by
`load_catalog` (the worker, the API and the page call it through `Clients.catalog`).
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json
import pkgutil
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal, Protocol, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, create_model

from settings import Settings
from tasks.model import InvalidInput

# A type's name is part of every record and of the API: short, lower case, safe in JSON as is.
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
CATALOG_PACKAGE = "tasks.catalog"

# What happens to a job whose worker died (or whose log could not be written) while it ran:
# "resume" continues after its last logged step (ctx.steps), "restart" runs it again from the
# beginning, "fail" fails it with "worker lost". Declared by the type, never guessed.
OnWorkerLost = Literal["resume", "restart", "fail"]

SCALARS = (int, float, str, bool)


class JobContext(Protocol):
    """What a job's function is handed as its first argument (tasks.worker.context implements it).

    Every call may raise the job's stop (a cancel, or another worker taking the job over): a
    BaseException, so that `except Exception` in the job does not swallow it.
    """

    # What the job keeps across a resume: JSON values, saved with each step `steps` logs and
    # handed back, as they were at the last logged step, when the job resumes.
    checkpoint: dict[str, Any]

    def steps(self, total: int) -> Iterator[int]:
        """Steps 1..total, each logged once its work is done (once per job: one sequence of steps).
        A resumed job starts after its last logged step, so each step is done exactly once."""
        ...

    def progress(self, done: int | None = None, total: int | None = None, message: str | None = None) -> None:
        """Report progress that is not a loop of steps: `done` of `total` and what is happening;
        what is left out keeps its value. Coalesced: call it as often as you like."""
        ...

    def log(self, message: object, level: str = "info") -> None:
        """Write a line to the job's log (`level`: debug, info, warning, error or critical). The
        job's `logging` records and printed lines are written the same way, as they come."""
        ...


@dataclass(frozen=True)
class SettingLimit:
    """`Annotated` metadata: an upper bound taken from a setting when the catalog loads (settings
    are never read at import), such as the count job's MAX_N."""

    setting: str


class UnknownJobType(InvalidInput):
    def __init__(self, name: object, known: list[str]) -> None:
        shown = repr(name)[:60]
        super().__init__(f"unknown job type {shown}; the types are: {', '.join(known)}")


class InvalidParams(InvalidInput):
    """Params refused: `errors` maps each bad param to what is allowed."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in errors.items()))
        self.errors = errors


class CatalogError(RuntimeError):
    """A job type or a JOB_MODULES entry cannot be used; raised when the catalog loads."""


@dataclass
class JobType:
    """One registered job type: its function and what the API and the page show of it."""

    name: str
    title: str
    description: str
    function: Callable[..., object]
    on_worker_lost: OnWorkerLost
    # How many steps a job of these params has, known before it runs (shown while it is queued).
    total: Callable[[dict[str, Any]], int] | None
    fields: dict[str, tuple[Any, Any]]  # param name -> (annotation, default or ...)
    params_model: type[BaseModel] = field(init=False)

    @property
    def resumable(self) -> bool:
        return self.on_worker_lost == "resume"

    def build(self, settings: Settings) -> None:
        """Make the params model, with the bounds `SettingLimit` takes from `settings`."""
        fields = {name: (_resolve(hint, settings), default) for name, (hint, default) in self.fields.items()}
        # JSON has no NaN or infinity (Python's json module reads them all the same): refused.
        config = ConfigDict(extra="forbid", allow_inf_nan=False, title=f"{self.title} params")
        self.params_model = create_model(f"{self.name}_params", __config__=config, **fields)  # type: ignore[call-overload]

    def validate(self, params: object) -> BaseModel:
        """The params as the function takes them; InvalidParams naming each bad one otherwise."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParams({"params": "must be a JSON object of the job type's parameters"})
        try:
            return self.params_model.model_validate(params)
        except ValidationError as exc:
            raise InvalidParams(self._reasons(exc)) from None

    def json_params(self, params: object) -> dict[str, Any]:
        """Checked params as JSON values, defaults filled in: what a job's records hold."""
        return self.validate(params).model_dump(mode="json")

    def schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()

    def _reasons(self, exc: ValidationError) -> dict[str, str]:
        allowed = ", ".join(self.fields) or "none"
        reasons: dict[str, str] = {}
        for error in exc.errors(include_url=False):
            name = ".".join(str(part) for part in error["loc"]) or "params"
            if error["type"] == "extra_forbidden":
                reason = f"unknown parameter; the parameters of {self.name} are: {allowed}"
            elif error["type"] == "missing":
                reason = "required"
            elif error["type"] == "value_error":
                reason = str(error.get("ctx", {}).get("error", error["msg"]))
            else:
                reason = error["msg"]
            reasons.setdefault(name[:80], reason)
        return reasons


_registry: dict[str, JobType] = {}


def job_type(
    name: str | None = None,
    *,
    title: str | None = None,
    description: str | None = None,
    on_worker_lost: OnWorkerLost = "fail",
    total: Callable[[dict[str, Any]], int] | None = None,
) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Register the decorated function as a job type (its name defaults to the function's).

    The description defaults to the docstring's first paragraph. `on_worker_lost` declares what
    a worker's death does to a running job (see OnWorkerLost); "resume" needs `ctx.steps`.
    """

    def register(function: Callable[..., object]) -> Callable[..., object]:
        type_name = name or function.__name__
        if not NAME_RE.fullmatch(type_name):
            raise CatalogError(f"job type name {type_name!r}: use lower case letters, digits and _ (at most 40)")
        if on_worker_lost not in typing.get_args(OnWorkerLost):
            raise CatalogError(f"job type {type_name}: on_worker_lost must be one of {typing.get_args(OnWorkerLost)}")
        known = _registry.get(type_name)
        if known is not None and known.function.__module__ != function.__module__:
            raise CatalogError(
                f"job type {type_name} is defined twice: in {known.function.__module__} and in {function.__module__}"
            )
        doc = inspect.getdoc(function) or ""
        _registry[type_name] = JobType(
            name=type_name,
            title=title or type_name.replace("_", " ").capitalize(),
            description=description if description is not None else doc.split("\n\n")[0].replace("\n", " "),
            function=function,
            on_worker_lost=on_worker_lost,
            total=total,
            fields=_fields(type_name, function),
        )
        return function

    return register


def _fields(type_name: str, function: Callable[..., object]) -> dict[str, tuple[Any, Any]]:
    """Param name -> (annotation, default) from the signature, after the context parameter."""
    if inspect.iscoroutinefunction(function) or inspect.isgeneratorfunction(function):
        raise CatalogError(f"job type {type_name}: the function must be a plain function (not async, not a generator)")
    hints = typing.get_type_hints(function, include_extras=True)
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise CatalogError(f"job type {type_name}: the function's first parameter must be the job's context (ctx)")
    fields: dict[str, tuple[Any, Any]] = {}
    for parameter in parameters[1:]:
        where = f"job type {type_name}, parameter {parameter.name}"
        if parameter.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            raise CatalogError(f"{where}: only named parameters can be a job's inputs (no *args, **kwargs)")
        if parameter.name.startswith(("_", "model_")):
            raise CatalogError(f"{where}: names starting with _ or model_ are reserved")
        hint = hints.get(parameter.name)
        if hint is None:
            raise CatalogError(f"{where}: needs a type hint (int, float, str, bool, Literal[...] or an Enum)")
        _check_supported(where, hint)
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (hint, default)
    return fields


def _base(hint: Any) -> tuple[Any, bool]:
    """The hint without Annotated and without `| None`, and whether None was allowed."""
    if get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in get_args(hint) if arg is not type(None)]
        if len(members) == 1:
            return _base(members[0])[0], True
    return hint, False


def _check_supported(where: str, hint: Any) -> None:
    base, _ = _base(hint)
    if base in SCALARS or (isinstance(base, type) and issubclass(base, enum.Enum)):
        return
    if get_origin(base) is Literal and all(isinstance(v, (str, int)) for v in get_args(base)):
        return
    raise CatalogError(f"{where}: type {base!r} is not supported; use int, float, str, bool, Literal[...] or an Enum")


def _refuse_bool(value: object) -> object:
    """JSON's true is not the number 1 (pydantic's lax mode would take it as one)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


def _resolve(hint: Any, settings: Settings) -> Any:
    """`hint` with SettingLimit turned into a bound from `settings`, and numbers refusing booleans."""
    base, optional = _base(hint)
    metadata = list(get_args(hint)[1:]) if get_origin(hint) is Annotated else []
    resolved = [
        annotated_types.Le(getattr(settings, item.setting)) if isinstance(item, SettingLimit) else item
        for item in metadata
    ]
    if base in (int, float):
        resolved.append(BeforeValidator(_refuse_bool))
    inner = Annotated[(base, *resolved)] if resolved else base
    return inner | None if optional else inner


@cache
def load_catalog(settings: Settings) -> dict[str, JobType]:
    """Every job type: the built-in catalog's modules, then JOB_MODULES; their models built."""
    catalog = importlib.import_module(CATALOG_PACKAGE)
    names = [f"{CATALOG_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(catalog.__path__)]
    for module in [*sorted(names), *settings.job_modules]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CatalogError(f"cannot import job module {module} (JOB_MODULES): {exc}") from exc
    for job in _registry.values():
        job.build(settings)
    return dict(_registry)


def find(catalog: dict[str, JobType], name: object) -> JobType:
    """The job type called `name`; UnknownJobType (with the known names) otherwise."""
    job = catalog.get(name) if isinstance(name, str) else None
    if job is None:
        raise UnknownJobType(name, sorted(catalog))
    return job


def params_size(params: dict[str, Any]) -> int:
    """The params' size as their records hold them, in bytes of JSON."""
    return len(json.dumps(params, separators=(",", ":")).encode())
