"""Builds the Reflex app: the page, the HTTP API and the shared progress listener."""

import reflex as rx

from rxapp.api import api
from rxapp.hub import hub
from rxapp.pages.index import index
from rxapp.state.form import FormState
from rxapp.state.jobs import JobsState
from rxapp.state.notify import NotifyState
from tasks.clients import clients

# Every job type now: a module named in JOB_MODULES that cannot be imported, or a type the
# catalog refuses, stops the app at start with the reason, not at a page's first request.
clients().catalog  # noqa: B018 - loading it is the point

app = rx.App(
    api_transformer=api,
    head_components=[
        rx.el.meta(name="application-name", content="Jobstream"),
        rx.el.meta(name="description", content="Jobstream: run long background jobs and watch them live."),
    ],
)
# The tab's title follows the running jobs' progress (JobsState.tab_title): "Jobstream" when none run.
app.add_page(
    index, route="/", title=JobsState.tab_title, on_load=[FormState.load, JobsState.load_jobs, NotifyState.load]
)
app.register_lifespan_task(hub.run)
