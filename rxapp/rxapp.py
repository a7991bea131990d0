"""Builds the Reflex app: the page, the HTTP API and the shared progress listener."""

import reflex as rx

from rxapp.api import api
from rxapp.hub import hub
from rxapp.pages.index import index
from rxapp.state.jobs import JobsState

app = rx.App(api_transformer=api)
app.add_page(index, route="/", title="Jobstream", on_load=JobsState.load_jobs)
app.register_lifespan_task(hub.run)
