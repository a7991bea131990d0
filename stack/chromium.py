"""Headless Chromium as Playwright launches it here, for the page tests and the bench."""

CHROMIUM = "/usr/bin/chromium"
# The flags that work on these machines (see ENVIRONMENT.md); `playwright install` cannot run here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
