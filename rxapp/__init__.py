"""The Reflex web app: the live progress page and the HTTP API."""
