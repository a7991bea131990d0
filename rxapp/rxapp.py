"""Builds the Reflex app: the page, the HTTP API and the shared progress listener."""

import reflex as rx
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp

from rxapp.api import api, without_docs
from rxapp.asset_cache import ImmutableAssets
from rxapp.components.outage import outage_notice
from rxapp.hub import hub
from rxapp.limits import EventRateLimit
from rxapp.pages.index import index
from rxapp.pages.ops import ops
from rxapp.session import sessions
from rxapp.state.form import FormState
from rxapp.state.jobs import JobsState
from rxapp.state.notify import NotifyState
from rxapp.state.ops import OpsState
from tasks.clients import clients

# Every job type now: a module named in JOB_MODULES that cannot be imported, or a type the
# catalog refuses, stops the app at start with the reason, not at a page's first request.
clients().catalog  # noqa: B018 - loading it is the point
if not clients().settings.api_docs:
    without_docs(api)


def known_hosts_only(backend: ASGIApp) -> ASGIApp:
    """Answer 400 to a request, or a socket, for another host name than ALLOWED_HOSTS: a site that
    points its own name at this server (DNS rebinding) gets nothing."""
    return TrustedHostMiddleware(backend, allowed_hosts=list(clients().settings.allowed_hosts), www_redirect=False)


app = rx.App(
    # The outermost wrapper comes last: a wrong Host is refused before a session is made.
    api_transformer=[api, ImmutableAssets, sessions(clients().settings), known_hosts_only],
    head_components=[
        rx.el.meta(name="application-name", content="Jobstream"),
        rx.el.meta(name="description", content="Jobstream: run long background jobs and watch them live."),
    ],
)
# The tab's title follows the running jobs' progress (JobsState.tab_title): "Jobstream" when none run.
app.add_page(
    index, route="/", title=JobsState.tab_title, on_load=[FormState.load, JobsState.load_jobs, NotifyState.load]
)
# The operator's console: "not found" unless OPS_PASSWORD_HASH is set; every event checks the login.
app.add_page(ops, route="/ops", title="Operator's console · Jobstream", on_load=OpsState.load)
# Reflex's connection toast shows the socket's error and the server's address: a plain notice instead.
app.app_wraps[(5, "Overlay")] = lambda stateful: outage_notice() if stateful else None
app.register_lifespan_task(hub.run)
app.add_middleware(EventRateLimit(clients().settings))
