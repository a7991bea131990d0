"""Reflex configuration, taken from Jobstream's settings."""

import reflex as rx
from reflex_base.plugins.sitemap import SitemapPlugin

from settings import get_settings

settings = get_settings()

config = rx.Config(
    app_name="rxapp",
    frontend_port=settings.frontend_port,
    backend_port=settings.backend_port,
    api_url=settings.api_url,
    telemetry_enabled=False,
    disable_plugins=[SitemapPlugin],
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo", radius="large"))],
)
