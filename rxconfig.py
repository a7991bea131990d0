"""Reflex configuration, taken from Jobstream's settings."""

import os

import reflex as rx
from reflex.constants import StateManagerMode
from reflex_base.plugins.sitemap import SitemapPlugin

from settings import get_settings

settings = get_settings()

if settings.reflex_redis_url:
    # With page state in Redis, every live update would otherwise take the page's lock, read its state
    # and write it back: several round trips each. Reflex's opportunistic lock keeps a page's state in
    # the process that updates it, for up to the hold time or until another process asks for it. At 200
    # pages this delivered 5 times the updates (bench: e2e_latency_redis_state_ms). Set either variable
    # to override.
    os.environ.setdefault("REFLEX_OPLOCK_ENABLED", "true")
    os.environ.setdefault("REFLEX_OPLOCK_HOLD_TIME", "500ms")

config = rx.Config(
    # Without Redis, page state lives in memory: Reflex's default, the disk manager, writes every
    # change to disk, which costs more than the update itself when many pages watch fast jobs.
    redis_url=settings.reflex_redis_url or None,
    state_manager_mode=StateManagerMode.REDIS if settings.reflex_redis_url else StateManagerMode.MEMORY,
    app_name="rxapp",
    frontend_port=settings.frontend_port,
    backend_port=settings.backend_port,
    api_url=settings.api_url,
    telemetry_enabled=False,
    disable_plugins=[SitemapPlugin],
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo", radius="large"))],
)
