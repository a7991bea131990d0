"""What a deployment serves and to whom, from its settings: no interactive docs unless asked for,
the origins and host names it answers (derived from its URLs unless given), each refused clearly
when malformed."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from rxapp.api import without_docs
from settings import SettingsError, load_settings


def test_the_docs_are_off_unless_a_setting_turns_them_on() -> None:
    assert load_settings({}).api_docs is False
    assert load_settings({"API_DOCS": "on"}).api_docs is True
    with pytest.raises(SettingsError, match="API_DOCS must be on or off"):
        load_settings({"API_DOCS": "yes please"})
    app = FastAPI()
    without_docs(app)
    client = TestClient(app)
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200, "the schema stays"


def test_origins_and_hosts_default_to_the_pages_and_the_apis() -> None:
    settings = load_settings({"FRONTEND_PORT": "3001", "API_URL": "https://jobs.example.com/"})
    assert settings.allowed_origins == (
        "http://localhost:3001",
        "http://127.0.0.1:3001",
        "http://localhost:8000",
        "http://127.0.0.1:8000",
        "https://jobs.example.com",
    )
    assert settings.allowed_hosts == ("localhost", "127.0.0.1", "jobs.example.com")
    origins = "https://a.example, https://b.example:8443/"
    given = load_settings({"ALLOWED_ORIGINS": origins, "ALLOWED_HOSTS": "*.example"})
    assert given.allowed_origins == ("https://a.example", "https://b.example:8443")
    assert given.allowed_hosts == ("*.example",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALLOWED_ORIGINS", "*"),
        ("ALLOWED_ORIGINS", "jobs.example.com"),
        ("ALLOWED_ORIGINS", "https://jobs.example.com/path"),
        ("ALLOWED_ORIGINS", "javascript:alert(1)"),
        ("ALLOWED_HOSTS", "jobs.example.com:8000"),
        ("ALLOWED_HOSTS", "a b"),
    ],
)
def test_a_malformed_origin_or_host_stops_the_settings(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})
