"""The job form: which type is chosen, and its fields (from its params schema) with the reasons
its last submit was refused next to the fields they concern.

A state of its own, apart from the jobs: live updates of the cards never load or write it.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

import reflex as rx

from rxapp.forms import FieldSpec, field_specs, form_params, with_errors
from tasks.clients import clients
from tasks.jobtypes import find
from tasks.model import DEFAULT_JOB_TYPE


@dataclasses.dataclass
class TypeOption:
    name: str = ""
    title: str = ""


@cache
def fields_of(job_type: str) -> list[FieldSpec]:
    """The form of a known job type (the catalog does not change while the process runs)."""
    return field_specs(clients().catalog[job_type].schema())


class FormState(rx.State):
    types: list[TypeOption] = []
    job_type: str = DEFAULT_JOB_TYPE
    description: str = ""
    fields: list[FieldSpec] = []

    @rx.event
    def load(self):
        """On page load: the catalog's types, and the chosen type's form (kept across a reload)."""
        if not self.types:
            self.types = [TypeOption(job.name, job.title) for job in clients().catalog.values()]
            self._show(self.job_type)

    @rx.event
    def choose(self, job_type: str):
        """Show the form of `job_type` (a type of the catalog), without the errors of another type's submit."""
        if isinstance(job_type, str) and job_type in clients().catalog:
            self._show(job_type)

    def _show(self, job_type: str) -> None:
        self.job_type, self.description = job_type, clients().catalog[job_type].description
        self.fields = fields_of(job_type)

    def params(self, form: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The chosen type and the params a submitted form holds; UnknownJobType if the type is
        no longer in the catalog."""
        job = find(clients().catalog, self.job_type)
        return job.name, form_params(fields_of(job.name), form)

    def refused(self, errors: dict[str, str]) -> str:
        """Show InvalidParams' reasons next to their fields; return those about no field."""
        self.fields, general = with_errors(fields_of(self.job_type), errors)
        return general

    def accepted(self) -> None:
        """The last submit started a job: no field is in error any more."""
        if any(spec.error for spec in self.fields):
            self.fields = fields_of(self.job_type)
