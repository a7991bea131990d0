"""Reflex configuration, taken from Jobstream's settings."""

import reflex as rx
from reflex.constants import StateManagerMode
from reflex_base.plugins.sitemap import SitemapPlugin

from settings import apply_reflex_environment, get_settings

settings = get_settings()

apply_reflex_environment(settings)  # before Reflex builds its state manager

config = rx.Config(
    # Without Redis, page state lives in memory: Reflex's default, the disk manager, writes every
    # change to disk, which costs more than the update itself when many pages watch fast jobs.
    redis_url=settings.reflex_redis_url or None,
    state_manager_mode=StateManagerMode.REDIS if settings.reflex_redis_url else StateManagerMode.MEMORY,
    app_name="rxapp",
    frontend_port=settings.frontend_port,
    backend_port=settings.backend_port,
    api_url=settings.api_url,
    # The HTTP API (CORS) and the socket (its Origin) answer only pages of these origins.
    cors_allowed_origins=list(settings.allowed_origins),
    telemetry_enabled=False,
    disable_plugins=[SitemapPlugin],
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo", radius="large"))],
)
